"""The chat tool-call format with the Qwen2.5-style BPE tokenizer of grpo_common.bpe_tokenizer: tools
in the prompt, the call read from `<tool_call>` JSON, the observation as the template's rendering of a
tool message."""

from __future__ import annotations

import json

import pytest
from grpo_rollout.environments import ENVIRONMENTS, EpisodeStart, ModelTurn
from grpo_rollout.prompt_encoding import PromptEncoder
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def encoder(bpe_tokenizer: PreTrainedTokenizerFast) -> PromptEncoder:
    return PromptEncoder(bpe_tokenizer)


def test_the_prompt_carries_the_environments_tools(encoder: PromptEncoder) -> None:
    environment = ENVIRONMENTS.get_item("calculator", import_references=False)({"format": "chat"})
    assert environment.stop_strings == ("</tool_call>",)
    ids = encoder.encode("what is 12*34?", chat=True, tools=environment.tools)
    text = encoder._tokenizer.decode(ids)
    assert '"name": "calculator"' in text and '"expression"' in text
    assert text.endswith("what is 12*34?<|im_end|>\n<|im_start|>assistant\n")
    assert "<tools>" not in encoder._tokenizer.decode(encoder.encode("hi", chat=True))  # no tools: as before


def test_the_observation_is_the_templates_tool_turn(encoder: PromptEncoder) -> None:
    assert encoder.render_tool_turn("408") == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n408\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    environment = ENVIRONMENTS.get_item("calculator", import_references=False)({"format": "chat"})
    start = EpisodeStart("p", "q", (1,), "408", {}, 0, render_tool_message=encoder.render_tool_turn)
    call = json.dumps({"name": "calculator", "arguments": {"expression": "12*34"}})
    turn = ModelTurn((1,), f"<tool_call>{call}</tool_call>", 0, "</tool_call>")
    result = environment.step(environment.reset(start), turn)
    assert result.observation == encoder.render_tool_turn("408") and result.tool_errors == 0
    bad = ModelTurn((1,), '<tool_call>{"name": "python", "arguments": {}}</tool_call>', 0, "</tool_call>")
    refused = environment.step(environment.reset(start), bad)
    assert refused.tool_errors == 1 and "unknown tool 'python'" in refused.observation


def test_the_chat_format_without_a_template_says_what_to_do() -> None:
    environment = ENVIRONMENTS.get_item("calculator", import_references=False)({"format": "chat"})
    start = EpisodeStart("p", "q", (1,), "408", {}, 0)
    turn = ModelTurn(
        (1,), '<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}</tool_call>', 0, None
    )
    with pytest.raises(RuntimeError, match="apply_chat_template"):
        environment.step(environment.reset(start), turn)


def test_a_chat_request_renders_tools_in_the_prompt_and_tool_turns_with_the_template(
    encoder: PromptEncoder,
) -> None:
    """The runner's side of the seam: what prepare_prompt / episode_start hand the environment."""
    from grpo.v1 import rollout_pb2
    from grpo_rollout.environments.episode import episode_start
    from grpo_rollout.request_validation import RequestEnvironments, prepare_prompt

    spec = rollout_pb2.EnvironmentSpec(name="calculator", config_json='{"format": "chat"}')
    prompt = rollout_pb2.Prompt(id="p", text="what is 12*34?", reference="408")
    vocab = len(encoder._tokenizer)
    chat = prepare_prompt(0, prompt, encoder, True, vocab, RequestEnvironments(spec, encoder))
    assert '"name": "calculator"' in encoder._tokenizer.decode(chat.token_ids)
    assert episode_start(chat, 0, encoder).render_tool_message is not None
    plain = prepare_prompt(0, prompt, encoder, False, vocab, RequestEnvironments(spec, encoder))
    assert "<tools>" not in encoder._tokenizer.decode(plain.token_ids)
    assert episode_start(plain, 0, encoder).render_tool_message is None
