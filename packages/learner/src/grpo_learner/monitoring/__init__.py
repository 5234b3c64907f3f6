"""What a run reports: per-step metrics (JSONL, TensorBoard, progress bar), phase timings, plots.

metrics      per-step metrics to `RUN_DIR/metrics.jsonl` and TensorBoard
phase_timer  wall seconds per phase of a step (`timing/<phase>`)
plot         `grpo plot RUN_DIR`: the curves of a run as one PNG
"""
