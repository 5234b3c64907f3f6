"""The whole system at real size on CPU: Qwen2-shaped models with a 151,936-entry BPE tokenizer.

    uv run python benchmarks/real_size.py --sizes 25m,100m,0.5b [--dtype bfloat16] [--record]

Per size, a model built from a config (random weights, nothing downloaded) is saved with the
byte-level BPE tokenizer of `grpo_common.bpe_tokenizer` and trained for 3 GRPO steps by `grpo train`
with its own local reward and rollout services (child processes on loopback, as in production):
2 prompts of ~100 tokens (chat template applied), G = 4, 64 new tokens, beta = 0.04 (so a reference
model exists), on CPU. Printed per size, and saved as JSON:

- s/step (steps 2-3; step 1 is warm-up) and the phase split (`timing/*` of metrics.jsonl);
- the peak RSS of each process (VmHWM from /proc/PID/status, polled) next to its floor:
  learner params x 16 B (fp32 weights, gradients, AdamW's two moments) + params x 4 B (the
  reference), rollout params x its dtype's bytes, and the target 1.3 x floor + 1.5 GiB (the
  interpreter, torch and gRPC); the reward service has no model, so no floor;
- push bytes and seconds per push (`push/bytes`, `timing/push`);
- the largest vocabulary-sized tensors, by construction of the code measured: the learner's
  lm_head chunk (chunk tokens x vocab x 4 B) and the rollout's one decode step (rows x vocab).

Figures are measured on a shared machine: the provenance line records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from grpo_common.bpe_tokenizer import QWEN2_VOCAB_SIZE, build_bpe_tokenizer, save_bpe_tokenizer
from grpo_learner.config import LearnerConfig
from grpo_learner.grpo.logprobs import tokens_per_chunk
from grpo_learner.local.service_processes import find_executable
from grpo_learner.monitoring.metrics import read_metrics
from model_shapes import ModelShape, machine_description  # benchmarks/model_shapes.py
from results_file import provenance, record  # benchmarks/results_file.py
from transformers import AutoModelForCausalLM

GIB = 1 << 30
V = QWEN2_VOCAB_SIZE
SIZES = {
    "10m": ModelShape("10m", hidden=64, layers=2, heads=4, kv_heads=2, intermediate=256, vocab=V),
    "25m": ModelShape("25m", hidden=160, layers=4, heads=4, kv_heads=2, intermediate=640, vocab=V),
    "100m": ModelShape("100m", hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, vocab=V),
    # Qwen2-0.5B's exact shape.
    "0.5b": ModelShape("0.5b", hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=V),
}
STEPS, GROUP, PROMPTS, NEW_TOKENS, PROMPT_TOKENS, BETA = 3, 4, 2, 64, 100, 0.04
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SECTION = "Real size on CPU (benchmarks/real_size.py)"


@dataclass
class SizeFigures:
    size: str
    parameters: int
    rollout_dtype: str
    seconds_per_step: float
    phases: dict[str, float]
    peak_rss_gib: dict[str, float]
    floor_gib: dict[str, float]
    target_gib: dict[str, float]
    push_bytes: float
    push_seconds: float
    logits_chunk: dict[str, str]
    sampler: dict[str, float] = field(default_factory=dict)
    services_behind: float = 0.0  # the most push/services_behind of any step: a push deadline fired


def problems(count: int = 8) -> list[dict[str, str]]:
    """Word problems whose chat-rendered prompts are ~PROMPT_TOKENS tokens long."""
    tokenizer = build_bpe_tokenizer()
    rows = []
    for i in range(count):
        a, b = 17 + 13 * i, 29 + 7 * i
        question = f"Alice has {a} apples and Bob gives her {b} more."
        story = " She counts them twice, writes the number down, and checks it against her notes."
        while True:
            text = f"{question}{story} How many apples does Alice have now? Reason step by step."
            chat = [{"role": "user", "content": text}]
            rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            if len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) >= PROMPT_TOKENS:
                break
            story += " Then she counts again."
        rows.append({"question": text, "answer": str(a + b)})
    return rows


def write_assets(shape: ModelShape, directory: Path) -> int:
    """Model + tokenizer in `directory/model`, problems in `directory/problems.jsonl`; returns params."""
    tokenizer = build_bpe_tokenizer()
    config = shape.qwen2_config(
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory / "model")
    save_bpe_tokenizer(directory / "model")
    rows = problems()
    (directory / "problems.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    parameters = sum(p.numel() for p in model.parameters())
    del model
    return parameters


class PeakRss:
    """Polls VmHWM (the kernel's own peak RSS) of a process and its descendants until stopped.

    Each process is named by its command line (learner, rollout, reward, reward worker); a
    process's VmHWM only grows, so the last value read is its peak to within one poll period.
    """

    def __init__(self, root_pid: int, period_s: float = 0.25) -> None:
        self.root_pid, self.period_s = root_pid, period_s
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in [self.root_pid, *_descendants(self.root_pid)]:
                peak = _vm_hwm(pid)
                if peak is not None:
                    self.peaks[pid] = (_role(pid, self.root_pid), peak)
            self._stop.wait(self.period_s)

    def by_role(self) -> dict[str, float]:
        """Peak RSS in GiB per role (the largest process of a role: e.g. one reward worker)."""
        out: dict[str, float] = {}
        for role, peak in self.peaks.values():
            out[role] = max(out.get(role, 0.0), peak / GIB)
        return out


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = [int(c) for c in children]
    return found + [d for c in found for d in _descendants(c)]


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _role(pid: int, root_pid: int) -> str:
    if pid == root_pid:
        return "learner"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    if "grpo-rollout" in cmdline:
        return "rollout"
    if "grpo-reward" in cmdline:
        return "reward"
    return "reward worker" if "grpo_reward" in cmdline or "multiprocessing" in cmdline else "other"


def run_size(name: str, work: Path, rollout_dtype: str, learner_bf16: bool, extra: list[str]) -> SizeFigures:
    shape = SIZES[name]
    directory = work / name
    directory.mkdir(parents=True, exist_ok=True)
    parameters = write_assets(shape, directory)
    run_dir = directory / "run"
    settings = [
        "data.apply_chat_template=true",
        f"rollout.group_size={GROUP}",
        f"rollout.prompts_per_step={PROMPTS}",
        f"rollout.sampling.max_new_tokens={NEW_TOKENS}",
        "rollout.sampling.temperature=1.0",
        f"loss.beta={BETA}",
        f"train.micro_batch_size={GROUP * PROMPTS}",
        "train.device=cpu",
        "checkpoint.interval=100000",
        "tensorboard=false",
        f"local_services.dtype={rollout_dtype}",
        *(["train.autocast=bfloat16", f"push.dtype={rollout_dtype}"] if learner_bf16 else []),
        *extra,
    ]
    command = [
        find_executable("grpo"), "train", "--model", str(directory / "model"),
        "--data", str(directory / "problems.jsonl"), "--run-dir", str(run_dir),
        "--max-steps", str(STEPS), "--no-progress",
    ]  # fmt: skip
    for setting in settings:
        command += ["--set", setting]
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "learner.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with PeakRss(process.pid) as rss:
            code = process.wait()
    if code != 0:
        tail = (run_dir / "learner.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name}: grpo train exited with {code}; its log ends with:\n{tail}")
    records = [r for r in read_metrics(run_dir) if r["step"] >= 1]
    timed = records[1:] or records  # step 1 pays for warm-up
    phases = sorted({k for r in timed for k in r if k.startswith("timing/") and k != "timing/step"})
    floors = {
        "learner": parameters * (16 + 4) / GIB,
        "rollout": parameters * DTYPE_BYTES[rollout_dtype] / GIB,
    }
    pushes = [r for r in records if r.get("push/bytes")]
    chunk_tokens = _learner_chunk_tokens(extra)
    return SizeFigures(
        size=name,
        parameters=parameters,
        rollout_dtype=rollout_dtype + (" (learner bf16 autocast)" if learner_bf16 else ""),
        seconds_per_step=statistics.fmean(r["timing/step"] for r in timed),
        phases={k.removeprefix("timing/"): statistics.fmean(r.get(k, 0.0) for r in timed) for k in phases},
        peak_rss_gib=rss.by_role(),
        floor_gib=floors,
        target_gib={role: 1.3 * floor + 1.5 for role, floor in floors.items()},
        push_bytes=statistics.fmean(r["push/bytes"] for r in pushes) if pushes else 0.0,
        push_seconds=statistics.fmean(r.get("timing/push", 0.0) for r in pushes) if pushes else 0.0,
        logits_chunk={
            "learner": f"{chunk_tokens} tokens x {V} x 4 B = {chunk_tokens * V * 4 / 2**20:.0f} MiB",
            "rollout": f"{GROUP * PROMPTS} rows x {V} x 4 B = {GROUP * PROMPTS * V * 4 / 2**20:.1f} MiB",
        },
        sampler={k: statistics.fmean(r[k] for r in timed if k in r) for k in _keys(timed, "sampler/")},
        services_behind=max((r.get("push/services_behind", 0.0) for r in records), default=0.0),
    )


def _keys(records: list[dict], prefix: str) -> list[str]:
    return sorted({k for r in records for k in r if k.startswith(prefix)})


def _learner_chunk_tokens(extra: list[str]) -> int:
    """Tokens per lm_head chunk in the learner, from its own code and the settings of this run."""
    train = {}
    for setting in extra:
        key, _, value = setting.partition("=")
        if key.startswith("train.logprob_chunk_"):
            train[key.removeprefix("train.")] = float(value)
    config = LearnerConfig(model={"name_or_path": "unused"}, train=train)
    return min(tokens_per_chunk(config.train, V), GROUP * PROMPTS * NEW_TOKENS)


def table(rows: list[SizeFigures]) -> str:
    lines = [
        "| size | params | rollout dtype | s/step | phases (s) | learner peak / floor / target (GiB) "
        "| rollout peak / floor / target (GiB) | reward peak (GiB) | push MB, s, services behind "
        "| sampler vs learner: mean abs logprob diff, KL | vocab-sized tensors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r.phases.items() if v >= 0.05)

        def rss(role: str, r: SizeFigures = r) -> str:
            peak = r.peak_rss_gib.get(role, float("nan"))
            mark = "ok" if peak <= r.target_gib[role] else "OVER"
            return f"{peak:.2f} / {r.floor_gib[role]:.2f} / {r.target_gib[role]:.2f} {mark}"

        reward = max(r.peak_rss_gib.get("reward", 0.0), r.peak_rss_gib.get("reward worker", 0.0))
        lines.append(
            f"| {r.size} | {r.parameters / 1e6:.1f}M | {r.rollout_dtype} | {r.seconds_per_step:.1f} "
            f"| {phases} "
            f"| {rss('learner')} | {rss('rollout')} | {reward:.2f} "
            f"| {r.push_bytes / 1e6:.0f}, {r.push_seconds:.1f}, behind {r.services_behind:.0f} "
            f"| {r.sampler.get('sampler/logprob_abs_diff', float('nan')):.2g}, "
            f"{r.sampler.get('sampler/kl', float('nan')):.2g} "
            f"| learner {r.logits_chunk['learner']}; rollout {r.logits_chunk['rollout']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="25m,100m,0.5b", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPE_BYTES), help="rollout model dtype")
    parser.add_argument("--learner-bf16", action="store_true", help="learner bf16 autocast, push in --dtype")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra grpo setting")
    parser.add_argument("--json", type=Path, help="write the figures here (default: WORK/real_size.json)")
    parser.add_argument("--work", type=Path, help="where models and runs go (default: a temporary folder)")
    parser.add_argument("--record", action="store_true", help=f"write the table into RESULTS.md ({SECTION})")
    parser.add_argument("--section", default=SECTION, help="RESULTS.md section to write with --record")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown sizes {unknown}; choose from {list(SIZES)}")
    print(machine_description("threads as grpo train splits them"), flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="real_size-"))
    load_before = os.getloadavg()
    rows = []
    for size in sizes:
        rows.append(run_size(size, work, args.dtype, args.learner_bf16, args.set))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    load_after = os.getloadavg()
    load = tuple(max(a, b) for a, b in zip(load_before, load_after, strict=True))
    body = table(rows)
    print(provenance(load))
    print(body)
    json_path = args.json or work / "real_size.json"
    json_path.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print(f"figures: {json_path}")
    if args.record:
        setup = (
            f"{STEPS} GRPO steps per size through `grpo train` with its own local reward and rollout "
            "services, "
            f"{PROMPTS} prompts of >= {PROMPT_TOKENS} tokens (chat template), G = {GROUP}, {NEW_TOKENS} new "
            f"tokens, beta = {BETA}, CPU; tokenizer: grpo_common.bpe_tokenizer ({V} entries). s/step and "
            "phases: mean of steps 2-3. Floors: learner params x 20 B, rollout params x dtype bytes; "
            "target 1.3 x floor + 1.5 GiB. Extra settings: " + (" ".join(args.set) or "none") + "."
        )
        print(f"recorded in {record(args.section, setup + chr(10) * 2 + body, load_during=load)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
