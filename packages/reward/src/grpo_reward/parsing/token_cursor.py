"""The parser's position in one token list: look ahead, consume, and demand a token by its text.

Both halves of the parser (the expression grammar in grammar.py and the LaTeX constructs in
latex_constructs.py) move through the same tokens with the same limits and nesting depth; this base
class is that shared state and nothing else.
"""

from __future__ import annotations

from grpo_reward.limits import Limits, ParseFailure
from grpo_reward.tokenizer import END, Token


class TokenCursor:
    """One pass over one token list; `depth` counts the nesting the grammar has entered (max_nesting)."""

    def __init__(self, tokens: list[Token], limits: Limits) -> None:
        self.tokens = tokens
        self.index = 0
        self.limits = limits
        self.depth = 0

    def peek(self, offset: int = 0) -> Token:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else END

    def advance(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def at(self, *texts: str) -> bool:
        return self.peek().text in texts and self.peek().kind != "end"

    def expect(self, text: str) -> None:
        token = self.advance()
        if token.text != text:
            found = "end of answer" if token.kind == "end" else repr(token.text)
            raise ParseFailure(f"expected {text!r} but found {found}")
