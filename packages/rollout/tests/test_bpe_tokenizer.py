"""The real-size tokenizer built in code (grpo_common.bpe_tokenizer) loads and behaves like Qwen2.5's."""

from __future__ import annotations

from pathlib import Path

from grpo_common.bpe_tokenizer import FIRST_SPECIAL_ID, QWEN2_VOCAB_SIZE, save_bpe_tokenizer
from grpo_common.hf_tokenizer import load_tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast, Qwen2Config


def test_it_has_qwen2s_vocabulary_size_and_special_token_ids(bpe_tokenizer: PreTrainedTokenizerFast) -> None:
    assert len(bpe_tokenizer) == QWEN2_VOCAB_SIZE == 151_936
    assert bpe_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + 1, FIRST_SPECIAL_ID + 2,
    ]  # fmt: skip
    assert (bpe_tokenizer.pad_token_id, bpe_tokenizer.eos_token_id) == (151_643, 151_645)
    assert bpe_tokenizer.convert_tokens_to_ids("<tool_call>") == 151_657
    # learned merges: a sentence of the corpus' kind is far fewer tokens than bytes, and round-trips
    text = "Alice has 12 apples and buys 30 more. How many apples does Alice have now?"
    ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text) / 2 and bpe_tokenizer.decode(ids) == text
    unseen = "naïve ∑ 日本"  # bytes no merge covers still round-trip
    assert bpe_tokenizer.decode(bpe_tokenizer(unseen, add_special_tokens=False)["input_ids"]) == unseen


def test_the_chat_template_renders_qwen25_turns_with_tools(bpe_tokenizer: PreTrainedTokenizerFast) -> None:
    tool = {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}
    messages = [{"role": "user", "content": "what is 12*34?"}]
    render = bpe_tokenizer.apply_chat_template
    text = render(messages, tools=[tool], add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n")
    assert '<tools>\n{"type": "function", "function": {"name": "calculator"' in text
    assert text.endswith("<|im_start|>user\nwhat is 12*34?<|im_end|>\n<|im_start|>assistant\n")
    plain = render(messages, add_generation_prompt=True, tokenize=False)
    assert plain == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nwhat is 12*34?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = bpe_tokenizer(plain, add_special_tokens=False)["input_ids"]
    assert ids.count(151_644) == 3 and ids.count(151_645) == 2  # the tags are single tokens


def test_saved_next_to_a_qwen2_config_auto_tokenizer_loads_the_same_ids(
    bpe_tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    save_bpe_tokenizer(tmp_path)
    Qwen2Config(vocab_size=QWEN2_VOCAB_SIZE).save_pretrained(tmp_path)
    text = bpe_tokenizer.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False)
    expected = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
    for loaded in (AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(tmp_path)):
        assert len(loaded) == QWEN2_VOCAB_SIZE and loaded.eos_token_id == 151_645
        assert loaded(text, add_special_tokens=False)["input_ids"] == expected
        assert loaded.chat_template == bpe_tokenizer.chat_template
