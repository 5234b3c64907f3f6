"""The metrics of an evaluation, as pure functions of what each problem got.

For a problem with n sampled completions of which c are correct:

    pass@k  = 1 - C(n-c, k) / C(n, k)          (Chen et al. 2021, the unbiased estimator of the chance
                                                that at least one of k samples is correct; k <= n)
    pass@1  = c / n                            (the same formula at k = 1)
    maj@k   = 1 if the majority answer of samples 0..k-1 is correct, else 0
    greedy  = 1 if the one greedy completion is correct, else 0

and each reported figure is the mean over problems.

maj@k is defined on the *first* k samples (sample_index 0..k-1), not as an expectation over all
k-subsets: samples are drawn independently, so the first k are a random k-subset and the mean over
problems estimates the same quantity, and the figure can be recomputed by hand from samples.jsonl.
Votes: every sample whose answer was extracted votes for its bucket (answers the verifier calls
equivalent share one; see buckets.py); samples without an answer do not vote. The bucket with the
most votes wins; a tie goes to the bucket that appeared first (the lowest sample_index among its
members), so the result never depends on dict order or chance. A bucket is correct when its first
member (its representative) is; no votes at all counts as wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

NO_ANSWER = -1  # the bucket of a sample whose answer could not be extracted


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i) (no big binomials)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_bucket(buckets: Sequence[int]) -> int:
    """The winning bucket of these votes (NO_ANSWER entries abstain); ties -> first to appear."""
    votes = Counter(b for b in buckets if b != NO_ANSWER)
    if not votes:
        return NO_ANSWER
    first_seen = {b: buckets.index(b) for b in votes}
    return min(votes, key=lambda b: (-votes[b], first_seen[b]))


@dataclass(frozen=True)
class ProblemResult:
    """What one problem got: the greedy verdict (None when not asked) and the sampled ones in order."""

    problem_id: str
    greedy_correct: bool | None = None
    correct: tuple[bool, ...] = ()  # sampled completions, by sample_index
    buckets: tuple[int, ...] = ()  # vote bucket of each sample (NO_ANSWER: nothing extracted)

    def majority_correct(self, k: int) -> bool:
        winner = majority_bucket(self.buckets[:k])
        if winner == NO_ANSWER:
            return False
        return self.correct[self.buckets.index(winner)]  # the bucket's representative

    def metrics(self, ks: Sequence[int]) -> dict[str, float]:
        """This problem's value of every metric; the reported figure is the mean over problems."""
        out: dict[str, float] = {}
        if self.greedy_correct is not None:
            out["greedy_accuracy"] = float(self.greedy_correct)
        if self.correct:
            n, c = len(self.correct), sum(self.correct)
            out["pass@1"] = c / n
            for k in ks:
                out[f"pass@{k}"] = pass_at_k(n, c, k)
            for k in ks:
                out[f"maj@{k}"] = float(self.majority_correct(k))
        return out


def metric_names(greedy: bool, ks: Sequence[int]) -> list[str]:
    """The summary's metric keys, in table order."""
    names = ["greedy_accuracy"] if greedy else []
    if ks:
        names += ["pass@1", *(f"pass@{k}" for k in ks if k != 1), *(f"maj@{k}" for k in ks)]
    return names


def mean_metrics(results: Sequence[ProblemResult], ks: Sequence[int]) -> dict[str, float]:
    """Each metric averaged over problems."""
    if not results:
        raise ValueError("no problems were evaluated")
    per_problem = [r.metrics(ks) for r in results]
    return {name: sum(m[name] for m in per_problem) / len(per_problem) for name in per_problem[0]}
