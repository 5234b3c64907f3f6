"""Evaluation: `grpo eval`, evaluation during training, and the embedded default's before/after.

estimators   pass@k (unbiased), maj@k, greedy accuracy: pure functions of per-problem results
buckets      answers in one vote bucket when the reward service says they are equivalent
sampling     completions from the rollout services (greedy and sampled)
runner       one evaluation: generate, score, bucket -> an EvalResult
report       samples.jsonl, summary.json and the table
comparison   several checkpoints on the same problems, paired bootstrap intervals
command      what `grpo eval` does (services, data, models)
"""
