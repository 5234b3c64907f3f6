"""What this service serves, as a fingerprint, and whether a delta stream may apply on top of it.

Why a record of its own: the learner proves that a rollout samples from exactly the weights it
pushed by comparing fingerprints (`grpo_common.weights.fingerprint`), and a delta is correct only
on top of exactly the bits it was computed against. Both questions are answered here, after every
pushed update, from what the backend serves (hf: its model's tensors; sglang: its host copy) rather
than from what was received, so that a wrong element anywhere shows.

The fingerprint covers the tensors the learner's weights cover: those named by the last `full_set`
stream, plus any named since. A backend that cannot read its tensors back (sglang without a host
copy) is fingerprinted from what it received whole, and takes no deltas. An update by another path
(an NCCL broadcast, a LoRA adapter) leaves the record stale: no fingerprint, no deltas, until the
next push of every tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from grpo.v1 import rollout_pb2
from grpo_common.weights.codec import DecodedWeights
from grpo_common.weights.fingerprint import Fingerprint, combine, tensor_digest

from grpo_rollout.backends.contract import DeltaReceiver, Generator

logger = logging.getLogger(__name__)


class ServedWeights:
    def __init__(self) -> None:
        self._covered: set[str] = set()
        self._digests: dict[str, int] = {}
        self._fingerprint: Fingerprint | None = None
        self._version: int | None = None  # the generator's version when the fingerprint was taken

    def fingerprint(self, generator: Generator) -> Fingerprint | None:
        """The fingerprint of what is served now; None when unknown or stale."""
        if self._version is None or generator.info().weight_version != self._version:
            return None
        return self._fingerprint

    def takes_deltas(self, generator: Generator) -> bool:
        return (
            isinstance(generator, DeltaReceiver)
            and generator.served_tensors() is not None
            and self.fingerprint(generator) is not None
        )

    def refuse_delta(self, base: rollout_pb2.DeltaBase, names: set[str], generator: Generator) -> str | None:
        """Why a delta computed against `base` and naming `names` cannot apply here (None: it can)."""
        current = generator.info().weight_version
        if not isinstance(generator, DeltaReceiver) or generator.served_tensors() is None:
            return (
                f"the {generator.info().backend!r} backend keeps no copy of its weights to apply a delta to"
            )
        fingerprint = self.fingerprint(generator)
        if fingerprint is None:
            return (
                "this service has not received every tensor since it started (or since another update path)"
            )
        if base.policy_version != current:
            return f"the delta applies on version {base.policy_version}, this service serves {current}"
        if Fingerprint.from_proto(base.fingerprint) != fingerprint:
            return (
                f"the delta's base fingerprint {Fingerprint.from_proto(base.fingerprint)} is not what this "
                f"service serves ({fingerprint})"
            )
        if not names <= self._covered:
            return f"the delta names tensors this service never received: {sorted(names - self._covered)[:3]}"
        return None

    def after_update(self, decoded: DecodedWeights, generator: Generator) -> Fingerprint | None:
        """Fingerprint what is served after a pushed update (blocking: run it in a worker thread)."""
        if decoded.lora_adapter is not None:  # the served model is base + adapter: not covered
            self.forget()
            return None
        names = set(decoded.tensors) | set(decoded.deltas)
        if decoded.full_set and decoded.delta_base is None:
            self._covered = names
        else:
            self._covered |= names
        served = generator.served_tensors() if isinstance(generator, DeltaReceiver) else None
        if served is not None:
            digests = self._served_digests(served)
            if digests is None:
                return None
            self._digests = digests
        else:
            self._digests = {name: d for name, d in self._digests.items() if name in self._covered}
            self._digests.update(_digests(decoded.tensors))
        if set(self._digests) != self._covered:  # a partial stream before any full one
            self.forget()
            return None
        self._fingerprint = combine(self._digests)
        self._version = generator.info().weight_version
        return self._fingerprint

    def recheck(self, generator: Generator) -> Fingerprint | None:
        """Hash what is served again (blocking: run it in a worker thread, outside updates).

        After an update the fingerprint is what the service reports until the next one; a tensor that
        changes afterwards (memory corruption, a stray in-place write) would go unseen. Re-reading it
        makes GetInfo report what is served now, so the learner's probes see the difference and
        resync. Only a backend whose tensors can be read back is rechecked."""
        if self.fingerprint(generator) is None:
            return None
        served = generator.served_tensors() if isinstance(generator, DeltaReceiver) else None
        if served is None:
            return self._fingerprint
        digests = self._served_digests(served)
        if digests is None:
            return None
        if digests != self._digests:
            changed = sorted(name for name, digest in digests.items() if self._digests.get(name) != digest)
            fingerprint = combine(digests)
            logger.error(
                "the weights served as version %d changed since they were applied (%d tensor(s), first %s): "
                "fingerprint %s, was %s; reporting the new one so the learner resends every tensor",
                self._version,
                len(changed),
                changed[0],
                fingerprint,
                self._fingerprint,
            )
            self._digests = digests
            self._fingerprint = fingerprint
        return self._fingerprint

    def _served_digests(self, served: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
        """The digests of the covered tensors as served; None, and the record forgotten, when the
        served copy lacks some of them (sglang: a stale host copy)."""
        if not self._covered <= served.keys():
            self.forget()
            return None
        return {name: tensor_digest(served[name]) for name in self._covered}

    def forget(self) -> None:
        self._covered.clear()
        self._digests.clear()
        self._fingerprint = None
        self._version = None

    def to_proto(self, generator: Generator) -> tuple[rollout_pb2.WeightFingerprint | None, bool]:
        """(fingerprint, takes_deltas) for a reply."""
        fingerprint = self.fingerprint(generator)
        return (fingerprint.to_proto() if fingerprint else None), self.takes_deltas(generator)


def _digests(tensors: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {name: tensor_digest(tensor) for name, tensor in tensors.items()}
