"""Stop a run at the first update that leaves non-finite gradients or parameters.

One diverged step (an overflow, a NaN from a bad kernel or a bad batch) must not reach the rollout
fleet: every later generation from NaN weights fails. The trainer checks the global gradient norm
before the optimizer step (non-finite iff some gradient is: the norm is computed anyway for
clipping) and every parameter after it, and raises `NonFiniteUpdate`; the loop then stops before
any push or checkpoint of that step, so the latest checkpoint is the last good one.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.tensor import DTensor


class NonFiniteUpdate(RuntimeError):
    """The step produced NaN/inf; nothing of it was pushed or checkpointed."""


AFTERMATH = (
    "the run stops: these weights are neither pushed nor checkpointed, and the latest checkpoint "
    "is the last good one (resume from it with a lower optim.lr or a tighter optim.max_grad_norm)"
)


def gradient_error(grad_norm: float) -> NonFiniteUpdate:
    return NonFiniteUpdate(f"the gradient norm is {grad_norm} (a gradient holds NaN or inf); {AFTERMATH}")


def nonfinite_parameters(named: Iterable[tuple[str, nn.Parameter]]) -> list[str]:
    """Names of the parameters (this rank's shards) holding NaN or inf, with one host sync when all
    are finite: a tensor's 2-norm is NaN or inf when one of its values is, so one multi-tensor norm
    finds the suspects and only those are checked value by value (a finite tensor whose norm
    overflows, |x| ~ 1e19 in fp32, is a suspect that the exact check clears)."""
    named = list(named)
    if not named:
        return []
    local = [(name, (p.to_local() if isinstance(p, DTensor) else p).detach()) for name, p in named]
    norms = torch.stack(torch._foreach_norm([t for _, t in local])).cpu()
    if bool(torch.isfinite(norms).all()):
        return []
    suspects = [local[i] for i in (~torch.isfinite(norms)).nonzero().flatten().tolist()]
    return [name for name, t in suspects if not bool(torch.isfinite(t).all())]


def parameter_error(names: list[str], total: int) -> NonFiniteUpdate:
    where = f"{names[0]}" + (f" and {total - 1} more" if total > 1 else "") if names else "another rank"
    return NonFiniteUpdate(
        f"the optimizer step left NaN or inf in {total} parameter(s) ({where}); {AFTERMATH}"
    )
