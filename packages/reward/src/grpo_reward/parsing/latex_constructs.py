r"""The LaTeX and plain-text constructs of the answer grammar: macros, named functions, words, matrices.

`primary` in grammar.py hands every command (`\frac`, `\sqrt[3]{x}`, `\binom`, `\{...\}`, `\lfloor`,
`\sum_{k=1}^{n}`, `\int_0^1 ... dx`), every word (`pi`, `sqrt`, `sin`, a subscripted symbol) and every
`\begin{...}` environment to this class. They live apart from the operator-precedence grammar because
they are where LaTeX's own rules apply (a macro argument is `{...}` or one digit or one symbol; `\sin 2x`
takes `2x` as its argument) and where a new macro is added; they recurse back into the grammar through
the abstract methods below, which grammar.Parser implements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import sympy

from grpo_reward.answers import Answer, Bracketed, SetOf
from grpo_reward.limits import AnswerTooLarge, ParseFailure
from grpo_reward.parsing.size_guards import as_expr, guarded_binomial, guarded_pow
from grpo_reward.parsing.token_cursor import TokenCursor
from grpo_reward.parsing.vocabulary import (
    ACCENTS,
    FUNCTIONS,
    GREEK,
    INFINITY_WORDS,
    MATRIX_ENVIRONMENTS,
    SUCH_THAT,
)
from grpo_reward.tokenizer import Token


class LatexConstructs(TokenCursor, ABC):
    """Parses one command, word or environment at the cursor into a sympy object or answers container."""

    # -- the expression grammar these constructs recurse into (grammar.Parser) -------------------------------
    @abstractmethod
    def answer(self) -> Answer: ...

    @abstractmethod
    def items(self, closers: tuple[str, ...]) -> list[Answer]: ...

    @abstractmethod
    def item(self) -> Answer: ...

    @abstractmethod
    def relation(self) -> Answer: ...

    @abstractmethod
    def expression(self) -> Answer: ...

    @abstractmethod
    def term(self) -> Answer: ...

    @abstractmethod
    def power(self) -> Answer: ...

    @abstractmethod
    def primary(self) -> Answer: ...

    @abstractmethod
    def group(self) -> Answer: ...

    # -- macro arguments, words and commands -----------------------------------------------------------------
    def argument(self) -> sympy.Expr:
        """A LaTeX macro argument: `{...}`, one digit of a number (`\\frac12`), or one symbol/command."""
        if self.at("{"):
            return as_expr(self.group())
        token = self.peek()
        if token.kind == "num" and len(token.text) > 1:
            self.tokens[self.index] = Token("num", token.text[1:])
            return sympy.Integer(int(token.text[0]))
        return as_expr(self.primary())

    def function_argument(self) -> sympy.Expr:
        """`\\sin(x)`, `\\sin x`, `\\sin 2x` (juxtaposed numbers and letters belong to the argument)."""
        if self.at("(", "{", "["):
            return as_expr(self.primary())
        value = as_expr(self.power())
        while self.peek().kind in ("num", "word") and self.peek().text not in ("and", "or", "in"):
            if self.peek().kind == "word" and self.peek().text in FUNCTIONS:
                break
            value = sympy.Mul(value, as_expr(self.power()))
        return value

    def word(self) -> Answer:
        text = self.advance().text
        if text in INFINITY_WORDS:
            return sympy.oo
        if text == "pi":
            return sympy.pi
        if text == "e":
            return sympy.E
        if text == "i":
            return sympy.I
        if text == "sqrt":
            return guarded_pow(self.function_argument(), sympy.Rational(1, 2), self.limits)
        if text == "log":
            return sympy.log(self.function_argument())
        if text in FUNCTIONS:
            return self.apply_function(text)
        return self.subscripted(text)

    def subscripted(self, name: str) -> sympy.Symbol:
        if self.at("_"):
            self.advance()
            if self.at("{"):
                self.advance()
                parts = []
                while not self.at("}"):
                    if self.peek().kind == "end":
                        raise ParseFailure("unclosed subscript")
                    parts.append(self.advance().text)
                self.advance()
                name = f"{name}_{''.join(parts)}"
            else:
                name = f"{name}_{self.advance().text}"
        return sympy.Symbol(name)

    def apply_function(self, name: str) -> sympy.Expr:
        exponent: sympy.Expr | None = None
        if self.at("^"):  # \sin^2 x
            self.advance()
            exponent = self.argument()
        value = FUNCTIONS[name](self.function_argument())
        return value if exponent is None else guarded_pow(value, exponent, self.limits)

    def command(self) -> Answer:
        token = self.advance()
        name = token.text[1:]
        if token.text in INFINITY_WORDS:
            return sympy.oo
        if name == "pi":
            return sympy.pi
        if name in GREEK:
            return self.subscripted(name)
        if name == "frac":
            numerator = self.argument()
            denominator = self.argument()
            return sympy.Mul(numerator, sympy.Pow(denominator, -1))
        if name == "sqrt":
            index: sympy.Expr = sympy.Integer(2)
            if self.at("["):
                self.advance()
                index = as_expr(self.expression())
                self.expect("]")
            radicand = as_expr(self.primary()) if self.at("(") else self.argument()
            return guarded_pow(radicand, sympy.Pow(index, -1), self.limits)
        if name == "binom":
            return guarded_binomial(self.argument(), self.argument(), self.limits)
        if name in FUNCTIONS:
            return self.apply_function(name)
        if name == "log":
            base: sympy.Expr | None = None
            if self.at("_"):
                self.advance()
                base = self.argument()
            argument = self.function_argument()
            return sympy.log(argument) if base is None else sympy.log(argument, base)
        if token.text == r"\{":
            if self.peek().kind in ("word", "cmd") and self.peek(1).text in SUCH_THAT:
                self.index += 2  # set-builder `\{x \mid 2 \le x < 5\}`: the set is its condition
                condition = self.item()
                self.expect(r"\}")
                return condition
            if self.at(r"\}"):
                self.advance()
                return SetOf(())
            items = self.items(closers=(r"\}",))
            self.expect(r"\}")
            return SetOf(tuple(items))
        if name in ("emptyset", "varnothing"):
            return SetOf(())
        if name in ("lfloor", "lceil"):
            inner = as_expr(self.expression())
            self.expect(r"\rfloor" if name == "lfloor" else r"\rceil")
            return sympy.floor(inner) if name == "lfloor" else sympy.ceiling(inner)
        if name in ("lvert", "vert", "|"):
            inner = as_expr(self.expression())
            if not self.at(r"\rvert", r"\vert", r"\|"):
                raise ParseFailure("unclosed absolute value")
            self.advance()
            return sympy.Abs(inner)
        if token.text in ACCENTS:
            return self.argument()
        if name in ("sum", "prod"):
            return self.big_operator(name)
        if name == "int":
            return self.integral()
        if name in ("langle",):
            items = self.items(closers=(r"\rangle",))
            self.expect(r"\rangle")
            return Bracketed("(", ")", tuple(items))
        raise ParseFailure(f"unsupported command {token.text}")

    def matrix(self) -> Answer:
        begin = self.advance().text
        environment = begin[len(r"\begin{") : -1].rstrip("*")
        if not begin.startswith(r"\begin") or environment not in MATRIX_ENVIRONMENTS:
            raise ParseFailure(f"unsupported environment {begin}")
        if environment == "array" and self.at("{"):
            while not self.at("}"):
                if self.peek().kind == "end":
                    raise ParseFailure("unclosed array column spec")
                self.advance()
            self.advance()
        rows: list[list[sympy.Expr]] = [[]]
        while not self.at(rf"\end{{{environment}}}", rf"\end{{{environment}*}}"):
            if self.peek().kind == "end":
                raise ParseFailure(f"missing \\end{{{environment}}}")
            rows[-1].append(as_expr(self.item()))
            if self.at("&"):
                self.advance()
            elif self.at(r"\\"):
                self.advance()
                rows.append([])
        self.advance()
        rows = [row for row in rows if row]
        if not rows or len({len(row) for row in rows}) != 1:
            raise ParseFailure("matrix rows have different lengths")
        matrix = sympy.ImmutableMatrix(rows)
        return sympy.det(matrix) if environment in ("vmatrix", "Vmatrix") else matrix

    def bound(self) -> tuple[sympy.Symbol | None, sympy.Expr]:
        value = self.argument() if not self.at("{") else None
        if value is not None:
            return None, value
        self.expect("{")
        first = self.relation()
        self.expect("}")
        if isinstance(first, sympy.Eq) and isinstance(first.lhs, sympy.Symbol):
            return first.lhs, as_expr(first.rhs)
        return None, as_expr(first)

    def big_operator(self, name: str) -> sympy.Expr:
        if not self.at("_"):
            raise ParseFailure(f"\\{name} needs bounds such as _{{k=1}}^{{n}}")
        self.advance()
        variable, lower = self.bound()
        self.expect("^")
        _, upper = self.bound()
        if variable is None:
            raise ParseFailure(f"\\{name} lower bound must name the index variable, e.g. _{{k=1}}")
        body = as_expr(self.term())
        span = upper - lower
        if span.is_number and (not span.is_finite or span > self.limits.max_sum_terms):
            raise AnswerTooLarge(f"\\{name} over more than {self.limits.max_sum_terms} terms")
        operator = sympy.Sum if name == "sum" else sympy.Product
        return operator(body, (variable, lower, upper)).doit()

    def integral(self) -> sympy.Expr:
        lower = upper = None
        if self.at("_"):
            self.advance()
            lower = self.argument()
            self.expect("^")
            upper = self.argument()
        start = self.index
        while not (self.peek().text == "d" and self.peek(1).kind == "word"):
            if self.peek().kind == "end":
                raise ParseFailure("integral without a differential such as dx")
            self.index += 1
        body_tokens = self.tokens[start : self.index]
        variable = sympy.Symbol(self.peek(1).text)
        self.index += 2
        body = as_expr(type(self)(body_tokens, self.limits).answer())
        if lower is None or upper is None:
            return sympy.integrate(body, variable)
        return sympy.integrate(body, (variable, lower, upper))
