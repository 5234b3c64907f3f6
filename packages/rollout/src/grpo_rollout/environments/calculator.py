"""The `calculator` environment: exact arithmetic and no code execution at all.

The model writes `<calc>EXPR</calc>` (format "tags", the default; the turn stops on `</calc>`) and reads
`<result>VALUE</result>`: integers plain (`56088`), other values as a reduced fraction (`-7/2`), and
`<result>error: MESSAGE</result>` for an expression it refuses. With format "chat" the call is the chat
template's `<tool_call>{"name": "calculator", "arguments": {"expression": "..."}}</tool_call>`. The
expression is evaluated by `arithmetic.evaluate` (numbers, + - * / // % **, unary minus, parentheses)
under the limits of the config (`config_json`: format, max_expression_chars, max_depth, max_exponent,
max_digits; all optional).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpo_rollout.environments.arithmetic import ArithmeticLimits, ExpressionError, evaluate, format_number
from grpo_rollout.environments.contract import ENVIRONMENTS
from grpo_rollout.environments.tool_calls import ToolDescription
from grpo_rollout.environments.tool_environment import SingleToolEnvironment, ToolAnswer, ToolFormatConfig

CALCULATOR = ToolDescription(
    name="calculator",
    description="Evaluate an arithmetic expression exactly: numbers, + - * / // % **, parentheses.",
    argument="expression",
    argument_description="The expression, e.g. 1234*5678 or (3+4)/7",
    call_tag="calc",
    result_tag="result",
)


class CalculatorConfig(ToolFormatConfig, ArithmeticLimits):
    """`EnvironmentSpec.config_json` of the calculator: the call format and the arithmetic limits."""


@ENVIRONMENTS.register("calculator")
class CalculatorEnvironment(SingleToolEnvironment):
    tool = CALCULATOR

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = CalculatorConfig.model_validate(dict(config))
        self.limits = ArithmeticLimits.model_validate(settings.model_dump(exclude={"format"}))
        super().__init__(settings.format)

    def call(self, argument: str) -> ToolAnswer:
        try:
            return ToolAnswer(format_number(evaluate(argument, self.limits)))
        except ExpressionError as error:
            return ToolAnswer(f"error: {error}", error=True)
