"""Bad input is refused with the field named: config values, groups, prompt files, the CLI."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpo.v1 import rollout_pb2
from grpo_common.config import ConfigError
from grpo_learner.cli import main
from grpo_learner.config import DataConfig, LearnerConfig, load_learner_config
from grpo_learner.data.prompts import PromptCursor, load_prompt_file
from grpo_learner.data.rollout_data import GroupError, ScoredCompletion, group_from_proto, validate_group
from grpo_learner.data.sources import GroupFilter
from grpo_learner.training.registered_names import REGISTRY_FIELDS, check_registered_names, registry_of
from learner_fixtures import group, tiny_qwen2

MODEL = {"model.name_or_path": "does/not/exist"}


def load(**overrides):
    return load_learner_config(overrides={**MODEL, **overrides}, environ={})


def test_unknown_loss_type_lists_the_registered_ones():
    config = load(**{"loss.loss_type": "ppo"})  # a plain string to the config, which imports no torch
    with pytest.raises(
        ConfigError, match=r"loss\.loss_type: .*unknown loss 'ppo'; registered: bnpo, cispo, dapo"
    ):
        check_registered_names(config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("loss.advantage.scaling", "rank"),
        ("loss.sampler_correction.level", "word"),
        ("push.transport", "pigeon"),
        ("push.lora_mode", "halfway"),
    ],
)
def test_every_registry_name_is_checked_naming_its_field(key, value):
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: unknown .*'{value}'; registered: "):
        check_registered_names(load(**{key: value}))


def test_train_help_lists_what_every_registry_a_config_field_names_holds(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    for field in REGISTRY_FIELDS:
        assert f"{field}: {', '.join(sorted(registry_of(field)))}" in shown


def test_the_config_loads_and_validates_without_importing_torch():
    code = (
        "import sys; from grpo_learner.config import load_learner_config;"
        "load_learner_config(overrides={'model.name_or_path': 'm', 'loss.loss_type': 'dapo'}, environ={});"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_flat_push_nccl_keys_are_read_as_the_nested_section_with_a_deprecation_message(caplog):
    with caplog.at_level(logging.WARNING):
        push = load(**{"push.nccl_master_address": "10.0.0.2", "push.nccl_timeout_s": 5}).push
    assert push.nccl.master_address == "10.0.0.2" and push.nccl.timeout_s == 5
    assert "push.nccl_master_address, push.nccl_timeout_s are deprecated" in caplog.text
    with pytest.raises(ConfigError, match=r"push\.nccl_master_port and push\.nccl\.master_port disagree"):
        load(**{"push.nccl_master_port": 1, "push.nccl.master_port": 2})


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("rollout.group_size", 1, "rollout.group_size"),
        ("optim.lr", -1, "optim.lr"),
        ("loss.epsilon_low", 1.5, "loss.epsilon_low"),
        ("loss.delta", 0.5, "loss.delta"),
        ("rollout.addresses", ["localhost"], "rollout.addresses"),
        ("rollout.sampling.temperature", 0, "rollout.sampling.temperature"),
        ("train.micro_batch_size", 0, "train.micro_batch_size"),
        ("loss.num_iterations", 0, "loss.num_iterations"),
        ("optim.schedule", "step", "optim.schedule"),
        ("train.micro_batch", 4, "train.micro_batch"),  # a typo is an error, not ignored
    ],
)
def test_bad_values_name_the_field(key, value, field):
    with pytest.raises(ConfigError) as info:
        load(**{key: value})
    assert field in str(info.value)


def test_push_every_beyond_the_staleness_window_is_refused():
    with pytest.raises(ConfigError, match=r"push\.every=3 .* raise max_staleness to >= 2"):
        load(**{"push.every": 3})
    assert load(**{"push.every": 3, "rollout.max_staleness": 2}).push.every == 3


def test_an_addresses_file_with_the_nccl_transport_is_refused():
    nccl = {"push.transport": "nccl", "push.nccl.master_address": "10.0.0.2"}
    with pytest.raises(
        ConfigError, match=r"rollout\.addresses_file cannot be used with push\.transport='nccl'"
    ):
        load(**nccl, **{"rollout.addresses_file": "rollouts.txt"})
    assert load(**nccl, **{"rollout.addresses": ["a:1"]}).push.transport == "nccl"


def test_file_then_environment_then_flags(tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[model]\nname_or_path = "m"\n[loss]\nloss_type = "dapo"\nbeta = 0.1\n[rollout]\ngroup_size = 4\n'
    )
    env = {"GRPO_LEARNER_LOSS__BETA": "0.2", "GRPO_LEARNER_ROLLOUT__GROUP_SIZE": "6"}
    config = load_learner_config(path, {"rollout.group_size": 8}, environ=env)
    assert (config.loss.loss_type, config.loss.beta, config.rollout.group_size) == ("dapo", 0.2, 8)
    assert config.checkpoint_dir == Path("runs/default/checkpoints")
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("model: {name_or_path: m}\nloss: {loss_type: gspo}\n")
    assert load_learner_config(yaml_path, environ={}).loss.loss_type == "gspo"


def test_cli_reports_config_errors_before_loading_any_model(tmp_path: Path, capsys):
    code = main(["train", "--model", "does/not/exist", "--data", "x.jsonl", "--set", "loss.epsilon_low=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "loss.epsilon_low" in err and "does/not/exist" not in err.replace("'does/not/exist'", "")
    assert main(["train", "--model", "m", "--rollout", "127.0.0.1:1"]) == 2
    assert "no data: give --data FILE" in capsys.readouterr().err
    data = tmp_path / "p.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    assert main(["train", "--model", str(data), "--data", str(data)]) == 2  # never asks the hub
    assert "is a file; name a checkpoint directory or a hub id" in capsys.readouterr().err
    assert main(["train", "--model", "m", "--data", str(data), "--rollout", "host:port"]) == 2
    assert "'host:port': port 'port' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--data", "mine.jsonl"], "--data / data.path"),
        (["--rollout", "10.0.0.7:50052"], "--rollout / rollout.addresses"),
        (["--set", "model.name_or_path=Qwen/Qwen2.5-0.5B"], "--model / model.name_or_path"),
        (["--set", "data.hub_name=openai/gsm8k"], "data.hub_name"),
        (["--set", "rollout.sampling.temperature=inf"], "rollout.sampling.temperature"),
    ],
)
def test_an_embedded_run_refuses_what_it_would_ignore_before_building_anything(
    flags: list[str], named: str, tmp_path: Path, capsys
):
    # No --model: the embedded run. A file, a service or a model it would not use is an error at once,
    # not a warm-up and a run on the embedded task instead.
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--no-progress", *flags]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_plot_writes_a_png(tmp_path: Path, capsys):
    records = [{"step": s, "reward": s / 10, "kl": 0.01 * s, "eval/accuracy": 0.1 * s} for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 5_000
    assert main(["plot", str(tmp_path / "missing")]) == 2


# --- groups -----------------------------------------------------------------------------------


def proto_group() -> rollout_pb2.RolloutGroup:
    completions = [
        rollout_pb2.Completion(token_ids=[4, 5], logprobs=[-0.1, -0.2], reward=1.0),
        rollout_pb2.Completion(
            token_ids=[6], logprobs=[-0.3], reward=0.0, finish_reason=rollout_pb2.FINISH_REASON_LENGTH
        ),
    ]
    return rollout_pb2.RolloutGroup(prompt_id="q1", prompt_token_ids=[1, 2], completions=completions)


def test_group_from_proto_converts_fields():
    g = group_from_proto(proto_group())
    assert g.prompt_token_ids == (1, 2) and g.completions[0].token_ids == (4, 5)
    assert g.completions[1].truncated and not g.completions[0].truncated
    assert g.completions[0].sampler_logprobs == pytest.approx((-0.1, -0.2))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.completions.pop(), r"1 completion\(s\); a group needs at least 2"),
        (lambda m: m.completions[0].logprobs.append(-1.0), "2 token_ids but 3 logprobs"),
        (lambda m: setattr(m.completions[1], "reward", math.nan), "completion 1: reward is nan"),
        (lambda m: setattr(m.completions[0], "reward", math.inf), "reward is inf"),
        (lambda m: m.completions[0].reward_components.update({"fmt": math.nan}), "component 'fmt' is nan"),
        (lambda m: m.completions[0].ClearField("token_ids"), "token_ids is empty"),
        (lambda m: m.ClearField("prompt_token_ids"), "prompt_token_ids is empty"),
        (lambda m: m.completions[0].logprobs.__setitem__(0, 0.7), "logprobs must be finite and <= 0"),
        (
            lambda m: m.completions[0].token_versions.add(policy_version=3, tokens=1),
            "token_versions spans cover 1 tokens for 2 token_ids",
        ),
        (
            lambda m: m.completions[1].token_versions.add(policy_version=3, tokens=0),
            "span holds 0 tokens",
        ),
    ],
)
def test_bad_groups_raise_a_clear_error(mutate, message):
    m = proto_group()
    mutate(m)
    with pytest.raises(GroupError, match=message):
        group_from_proto(m)


def test_filter_drops_bad_stale_and_zero_variance_groups():
    f = GroupFilter(group_size=2, max_staleness=1, reward_weights={"reward": 1.0}, dynamic_sampling=True)
    good = group((1,), [(2,), (3,)], [1.0, 0.0], version=4)
    assert f.reject_reason(good, policy_version=5) is None
    assert f.reject_reason(group((1,), [(2,), (3,)], [1.0, 0.0], version=3), 5) == "stale"
    assert f.reject_reason(group((1,), [(2,), (3,)], [1.0, 1.0], version=5), 5) == "zero_std"
    assert f.reject_reason(group((1,), [(2,), (3,), (4,)], [1.0, 0.0, 1.0], version=5), 5) == "invalid"
    weighted = GroupFilter(2, 0, {"correct": 1.0})
    assert weighted.reject_reason(good, 4) == "invalid"  # no 'correct' component


def test_a_partial_group_is_as_stale_as_its_oldest_token():
    """v1.4: completion 0 began under version 3 and finished under 5; the group arrives stamped with
    its oldest token's version, and even a sender that stamped the newest one is judged by the
    oldest recorded token."""
    message = proto_group()
    message.policy_version = 5
    message.completions[0].token_versions.add(policy_version=3, tokens=1)
    message.completions[0].token_versions.add(policy_version=5, tokens=1)
    message.completions[1].token_versions.add(policy_version=5, tokens=1)
    partial = group_from_proto(message)
    assert partial.oldest_version == 3
    assert partial.token_versions(partial.completions[0]) == (3, 5)
    f = GroupFilter(group_size=2, max_staleness=1, reward_weights={"reward": 1.0})
    assert f.reject_reason(partial, policy_version=4) is None
    assert f.reject_reason(partial, policy_version=5) == "stale"  # token 0 is two versions behind


def test_partial_rollouts_need_a_staleness_window():
    with pytest.raises(ConfigError, match=r"rollout\.partial needs rollout\.max_staleness >= 1"):
        load(**{"rollout.partial": True})
    assert load(**{"rollout.partial": True, "rollout.max_staleness": 1}).rollout.partial


def test_a_token_beyond_the_policy_vocabulary_makes_the_group_invalid_not_the_update_crash():
    # A rollout service serving another model's tokenizer: its ids would index past the embedding.
    f = GroupFilter(group_size=2, max_staleness=0, reward_weights={"reward": 1.0}, vocab_size=8)
    assert f.reject_reason(group((1,), [(2,), (7,)], [1.0, 0.0]), 0) is None
    assert f.reject_reason(group((1,), [(2,), (8,)], [1.0, 0.0]), 0) == "invalid"
    assert f.reject_reason(group((9, 1), [(2,), (3,)], [1.0, 0.0]), 0) == "invalid"
    with pytest.raises(
        GroupError, match=r"completion 1: token_ids holds 8, outside the policy's vocabulary \[0, 8\)"
    ):
        validate_group(group((1,), [(2,), (8,)], [1.0, 0.0]), vocab_size=8)


def test_the_policy_vocabulary_is_its_embedding_rows_through_a_lora_wrapper():
    from grpo_learner.config.lora import LoraConfig
    from grpo_learner.lora.adapters import add_adapters
    from grpo_learner.training.models import input_vocab_size

    model = tiny_qwen2()
    rows = model.get_input_embeddings().num_embeddings
    assert input_vocab_size(model) == rows
    assert input_vocab_size(add_adapters(model, LoraConfig(rank=4))) == rows


def test_missing_reward_component_is_named():
    g = group((1,), [(2,), (3,)], [1.0, 0.0])
    with pytest.raises(GroupError, match="reward component 'format'"):
        validate_group(g, ["format"])
    assert ScoredCompletion((1,), (-1.0,), 0.5).component("reward") == 0.5


# --- prompt files -----------------------------------------------------------------------------


def test_gsm8k_jsonl_keeps_the_full_answer_as_reference(tmp_path: Path):
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": "2+2?", "answer": "Add them. #### 4"}, {"question": "3*3?", "answer": "#### 9"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    source = load_prompt_file(path, prompt_template="Q: {question}\nA:")
    assert len(source) == 2
    assert source[0].reference == "Add them. #### 4" and source[0].text == "Q: 2+2?\nA:"


def test_math_parquet_layout_and_missing_columns(tmp_path: Path):
    path = tmp_path / "math.parquet"
    pq.write_table(pa.table({"problem": ["x?"], "solution": ["so \\boxed{5}"], "uid": ["m-1"]}), path)
    source = load_prompt_file(path, id_field="uid", task="math")
    assert (source[0].id, source[0].reference, source[0].task) == ("m-1", "so \\boxed{5}", "math")
    with pytest.raises(
        ValueError, match=r"no question column \['query'\]; columns are .*set data.question_field"
    ):
        load_prompt_file(path, question_field="query")


BAD_PROBLEM_FILES = {
    "not JSON": (b'{"question": "1+1", "answer": "2"}\n{bad\n', r"p.jsonl:2: not valid JSON"),
    "not an object": (b"[1, 2, 3]\n", r"p.jsonl:1: a row must be a JSON object, got list"),
    "not UTF-8": (b'\xff\xfe{"question"\n', r"p.jsonl is not UTF-8 text"),
    "empty question": (b'{"question": "", "answer": "2"}\n', r"row 0 \(id '0'\): its prompt is empty"),
    "blank answer": (b'{"question": "1+1", "answer": "  "}\n', r"row 0 \(id '0'\): its answer .* is empty"),
    "no rows": (b"\n\n", r"holds no rows"),
}


@pytest.mark.parametrize("name", BAD_PROBLEM_FILES)
def test_a_bad_problem_file_is_refused_at_load_naming_the_line_or_row(name: str, tmp_path: Path):
    # Each of these used to reach the services: a traceback mid-run, or a message without the file.
    content, message = BAD_PROBLEM_FILES[name]
    path = tmp_path / "p.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_prompt_file(path)


def test_a_directory_or_a_broken_parquet_file_is_named_as_such(tmp_path: Path):
    with pytest.raises(ValueError, match="is not a file"):
        load_prompt_file(tmp_path)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"fake\.parquet is not a readable Parquet file"):
        load_prompt_file(tmp_path / "fake.parquet")


@pytest.mark.parametrize("template", ["{foo}", "{", "{0}", "Q: {question} {answer}"])
def test_a_prompt_template_that_does_not_format_with_question_is_refused(template: str):
    with pytest.raises(ValueError, match="does not format with question= alone"):
        DataConfig(prompt_template=template)
    assert DataConfig(prompt_template="{{x}} Q: {question}").prompt_template == "{{x}} Q: {question}"


def test_cursor_is_reproducible_and_ids_are_unique_across_epochs(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}", "answer": str(i)}) for i in range(5)))
    source = load_prompt_file(path)
    first = PromptCursor(source, seed=1).take(12)
    again = PromptCursor(source, seed=1).take(12)
    assert first == again
    assert len({item.id for _, item in first}) == 12
    assert sorted(item.reference for _, item in first[:5]) == ["0", "1", "2", "3", "4"]  # one epoch
    resumed = PromptCursor(source, seed=1, position=7).take(5)
    assert resumed == first[7:]


def test_config_model_is_required():
    with pytest.raises(ConfigError, match="model"):
        load_learner_config(environ={})
    assert isinstance(load(), LearnerConfig)
