"""How a model calls a tool and reads its answer: the two call syntaxes of the built-in tool environments.

- `tags` (the default, for small models trained from scratch): the model writes `<TAG>ARGUMENT</TAG>`
  (`<calc>12*34</calc>`), the turn stops on `</TAG>`, and the observation is `<RESULT>CONTENT</RESULT>`
  (`<result>408</result>`). Each stop string must be one token of the model's tokenizer.
- `chat` (models with a chat template and tool support, Qwen2.5 style): the tools reach the model through
  the template (`tools=` of `apply_chat_template`), the model writes
  `<tool_call>{"name": "calculator", "arguments": {"expression": "12*34"}}</tool_call>`, the turn stops on
  `</tool_call>`, and the observation is what the template renders for a tool message with the content
  (`EpisodeStart.render_tool_message`), e.g. `<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n408\\n
  </tool_response><|im_end|>\\n<|im_start|>assistant\\n`.

A turn that does not end on the stop string holds no call (the episode ends). A call that cannot be read
(no opening tag, bad JSON, another tool's name, a missing argument) is a tool error the model sees.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grpo_common.registry import Registry

from grpo_rollout.environments.contract import EpisodeStart

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ToolDescription:
    """One tool: its name and argument for the chat format, its tags for the tags format."""

    name: str  # "calculator"
    description: str
    argument: str  # the one string argument, "expression"
    argument_description: str
    call_tag: str  # "calc": the model writes <calc>...</calc>
    result_tag: str  # "result": the observation is <result>...</result>

    def schema(self) -> dict[str, Any]:
        """The JSON schema `apply_chat_template(tools=[...])` takes (OpenAI function style)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        self.argument: {"type": "string", "description": self.argument_description}
                    },
                    "required": [self.argument],
                },
            },
        }


@dataclass(frozen=True)
class ToolCall:
    """A call found in a model turn: its argument, or why it could not be read (a tool error)."""

    argument: str = ""
    error: str = ""


class ToolCallSyntax(Protocol):
    stop_strings: tuple[str, ...]
    tools: tuple[Mapping[str, Any], ...]

    def parse(self, text: str) -> ToolCall | None:
        """The call that ends `text` (a model turn), None when the turn makes no call."""
        ...

    def observation(self, content: str, start: EpisodeStart) -> str:
        """The text the model reads next: the tool's answer `content` wrapped in this syntax."""
        ...

    def observation_ids(self, content: str, start: EpisodeStart) -> list[int] | None:
        """Its token ids when they must hold special tokens (template markup); None: encode the text."""
        ...


TOOL_CALL_SYNTAXES: Registry[type[ToolCallSyntax]] = Registry("tool-call format")


@TOOL_CALL_SYNTAXES.register("tags")
class TagSyntax:
    def __init__(self, tool: ToolDescription) -> None:
        self.opening, self.closing = f"<{tool.call_tag}>", f"</{tool.call_tag}>"
        self.result_tag = tool.result_tag
        self.stop_strings = (self.closing,)
        self.tools: tuple[Mapping[str, Any], ...] = ()  # the model learns the tags, not a template

    def parse(self, text: str) -> ToolCall | None:
        if not text.rstrip().endswith(self.closing):
            return None
        body = text.rstrip()[: -len(self.closing)]
        start = body.rfind(self.opening)
        if start < 0:
            return ToolCall(error=f"{self.closing} without {self.opening}")
        return ToolCall(argument=body[start + len(self.opening) :])

    def observation(self, content: str, start: EpisodeStart) -> str:
        return f"<{self.result_tag}>{content}</{self.result_tag}>"

    def observation_ids(self, content: str, start: EpisodeStart) -> list[int] | None:
        return None  # plain text: the service encodes it


@TOOL_CALL_SYNTAXES.register("chat")
class ChatSyntax:
    def __init__(self, tool: ToolDescription) -> None:
        self.tool = tool
        self.stop_strings = (TOOL_CALL_CLOSE,)
        self.tools: tuple[Mapping[str, Any], ...] = (tool.schema(),)

    def parse(self, text: str) -> ToolCall | None:
        if not text.rstrip().endswith(TOOL_CALL_CLOSE):
            return None
        body = text.rstrip()[: -len(TOOL_CALL_CLOSE)]
        start = body.rfind(TOOL_CALL_OPEN)
        if start < 0:
            return ToolCall(error=f"{TOOL_CALL_CLOSE} without {TOOL_CALL_OPEN}")
        try:
            call = json.loads(body[start + len(TOOL_CALL_OPEN) :])
        except (ValueError, RecursionError) as error:
            return ToolCall(error=f"the tool call is not valid JSON ({str(error)[:120]})")
        return self._read(call)

    def _read(self, call: object) -> ToolCall:
        expected = f'{{"name": "{self.tool.name}", "arguments": {{"{self.tool.argument}": "..."}}}}'
        if not isinstance(call, dict):
            return ToolCall(error=f"a tool call is a JSON object {expected}")
        if call.get("name") != self.tool.name:
            return ToolCall(
                error=f"unknown tool {str(call.get('name'))[:60]!r}; the tool is {self.tool.name!r}"
            )
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):  # some models send the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except (ValueError, RecursionError):
                return ToolCall(error=f"the arguments are not a JSON object; write {expected}")
        value = arguments.get(self.tool.argument) if isinstance(arguments, dict) else None
        if not isinstance(value, str):
            return ToolCall(error=f"missing string argument {self.tool.argument!r}; write {expected}")
        return ToolCall(argument=value)

    def observation(self, content: str, start: EpisodeStart) -> str:
        if start.render_tool_message is None:
            raise RuntimeError(
                'format = "chat" needs the model\'s chat template: send the request with '
                'apply_chat_template to a model that has one, or use format = "tags"'
            )
        return start.render_tool_message(content)

    def observation_ids(self, content: str, start: EpisodeStart) -> list[int] | None:
        return start.encode_tool_message(content) if start.encode_tool_message is not None else None


def tool_call_syntax(name: str, tool: ToolDescription) -> ToolCallSyntax:
    """The syntax a config's `format` names ("tags" or "chat")."""
    return TOOL_CALL_SYNTAXES.get_item(name, import_references=False)(tool)


def known_formats() -> Sequence[str]:
    return sorted(TOOL_CALL_SYNTAXES)
