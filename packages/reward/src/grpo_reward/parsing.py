r"""A recursive-descent parser for LaTeX and plain-text math answers that builds sympy objects directly.

Untrusted text never reaches eval, exec, sympify or parse_expr: the tokenizer admits a fixed alphabet, this
grammar admits a fixed set of constructs, and every node is built by calling a sympy constructor. Powers,
factorials, binomials and sums are size-checked *before* sympy evaluates them, so `10^{10^{10}}` or
`(10^{100})!` raise AnswerTooLarge instead of running for hours.

Grammar (lowest precedence first):
    answer   := item ((',' | ';' | 'and') item)*
    item     := relation (('\cup' | 'or') relation)*
    relation := expr (relop expr)*
    expr     := term (('+' | '-') term)*
    term     := unary (('*' | '/' | '\cdot' | '\times' | '\div')? unary)*    (juxtaposition multiplies)
    unary    := ('-' | '+') unary | power
    power    := postfix (('^' | '**') unary)?
    postfix  := primary '!'*
    primary  := number | symbol | constant | function | \frac | \sqrt | \binom | group | bracketed
              | set | |abs| | floor/ceil | matrix | \sum | \prod | \int
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sympy

from grpo_reward.answers import Answer, AnswerList, Bracketed, Chain, SetOf, Text, UnionOf
from grpo_reward.limits import DEFAULT_LIMITS, AnswerTooLarge, Limits, ParseFailure
from grpo_reward.tokenizer import END, KNOWN_WORDS, Token, tokenize

_RELATIONS: dict[str, Callable[..., sympy.Basic]] = {
    "=": sympy.Eq,
    "==": sympy.Eq,
    "<": sympy.Lt,
    ">": sympy.Gt,
    "<=": sympy.Le,
    "=<": sympy.Le,
    r"\leq": sympy.Le,
    r"\leqq": sympy.Le,
    ">=": sympy.Ge,
    "=>": sympy.Ge,
    r"\geq": sympy.Ge,
    r"\geqq": sympy.Ge,
    "!=": sympy.Ne,
    r"\neq": sympy.Ne,
}
_MULTIPLY = {"*", r"\cdot", r"\times", r"\ast"}
_DIVIDE = {"/", r"\div"}
_FUNCTIONS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "cot": sympy.cot,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "asin": sympy.asin,
    "acos": sympy.acos,
    "atan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "ln": sympy.log,
    "exp": sympy.exp,
    "abs": sympy.Abs,
    "lg": lambda value: sympy.log(value, 10),
}
_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
_MATRIX_ENVS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix", "array"}
_ACCENTS = {
    r"\vec",
    r"\hat",
    r"\bar",
    r"\tilde",
    r"\overline",
    r"\underline",
    r"\overrightarrow",
    r"\mathring",
}
_MIXED_NUMBER = re.compile(r"(?<![\d}^_.])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}")
_SUCH_THAT = {r"\mid", ":", "|", r"\vert"}
_INFINITY_WORDS = {r"\infty", r"\infinity", "oo", "inf", "infty", "infinity"}


def _mixed_number(match: re.Match[str]) -> str:
    whole, numerator, denominator = match.group(1), match.group(2), match.group(3)
    if int(numerator) < int(denominator):
        return rf"({whole}+\frac{{{numerator}}}{{{denominator}}})"
    return match.group(0)


class _Parser:
    """One parse of one token list; see the module docstring for the grammar."""

    def __init__(self, tokens: list[Token], limits: Limits) -> None:
        self.tokens = tokens
        self.index = 0
        self.limits = limits
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------------------
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

    # -- structure -----------------------------------------------------------------------------------------
    def answer(self) -> Answer:
        items = self.items(closers=())
        if self.peek().kind != "end":
            raise ParseFailure(f"unexpected {self.peek().text!r} after a complete answer")
        return items[0] if len(items) == 1 else AnswerList(tuple(items))

    def items(self, closers: tuple[str, ...]) -> list[Answer]:
        items = [self.item()]
        while self.at(",", ";", "and"):
            self.advance()
            if self.at(*closers) or self.peek().kind == "end":
                break
            items.append(self.item())
            if len(items) > self.limits.max_list_items:
                raise AnswerTooLarge(f"more than {self.limits.max_list_items} list items")
        return items

    def item(self) -> Answer:
        parts = [self.relation()]
        joined_by_or = False
        while self.at(r"\cup", "cup", "or", "U"):
            joined_by_or = joined_by_or or self.peek().text == "or"
            self.advance()
            parts.append(self.relation())
        if len(parts) == 1:
            return parts[0]
        set_like = any(
            isinstance(part, Bracketed | SetOf | Chain)
            or (isinstance(part, sympy.Rel) and not isinstance(part, sympy.Eq))
            for part in parts
        )
        if joined_by_or and not set_like:
            return AnswerList(tuple(parts))
        return UnionOf(tuple(parts))

    def relation(self) -> Answer:
        left = self.expression()
        relations: list[sympy.Basic] = []
        while True:
            token = self.peek()
            if token.text == r"\in":
                self.advance()
                return self.expression()
            if token.text not in _RELATIONS or token.kind == "end":
                break
            self.advance()
            right = self.expression()
            if (
                token.text in ("=", "==")
                and not isinstance(right, sympy.Basic)
                and isinstance(left, sympy.Symbol)
            ):
                return right  # `x = (1, 2)`: the name adds nothing
            relations.append(_RELATIONS[token.text](_expr(left), _expr(right), evaluate=False))
            left = right
        if not relations:
            return left
        return relations[0] if len(relations) == 1 else Chain(tuple(relations))

    def expression(self) -> Answer:
        value = self.term()
        while self.at("+", "-"):
            sign = self.advance().text
            right = _expr(self.term())
            value = sympy.Add(_expr(value), right if sign == "+" else -right)
        return value

    def term(self) -> Answer:
        value = self.unary()
        while True:
            if self.at(*_MULTIPLY):
                self.advance()
                value = sympy.Mul(_expr(value), _expr(self.unary()))
            elif self.at(*_DIVIDE):
                self.advance()
                value = sympy.Mul(_expr(value), sympy.Pow(_expr(self.unary()), -1))
            elif self.starts_factor():
                value = sympy.Mul(_expr(value), _expr(self.power()))
            else:
                return value

    def starts_factor(self) -> bool:
        """Whether the next token can begin an implicitly multiplied factor (`2x`, `x(x+1)`, `2\\sqrt{3}`)."""
        token = self.peek()
        if token.kind in ("num", "word"):
            return token.text not in ("and", "or", "in", "cup", "U")
        if token.kind == "cmd":
            return token.text not in _RELATIONS and token.text not in _MULTIPLY | _DIVIDE | {
                r"\cup",
                r"\in",
                r"\pm",
                r"\mp",
                r"\\",
                r"\}",
                r"\rfloor",
                r"\rceil",
                r"\rvert",
                r"\right",
                r"\quad",
                r"\to",
                r"\rightarrow",
                r"\cap",
                r"\setminus",
            }
        if token.kind == "env":
            return token.text.startswith(r"\begin")
        return token.text in ("(", "{")

    def unary(self) -> Answer:
        self.depth += 1
        if self.depth > self.limits.max_nesting:
            raise AnswerTooLarge(f"nested more than {self.limits.max_nesting} levels deep")
        try:
            if self.at("-"):
                self.advance()
                return -_expr(self.unary())
            if self.at("+"):
                self.advance()
                return self.unary()
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Answer:
        base = self.postfix()
        if self.at("^", "**"):
            self.advance()
            exponent = self.group() if self.at("{") else self.unary()
            return self.guarded_pow(_expr(base), _expr(exponent))
        return base

    def postfix(self) -> Answer:
        value = self.primary()
        while self.at("!"):
            self.advance()
            value = self.guarded_factorial(_expr(value))
        return value

    # -- primaries -----------------------------------------------------------------------------------------
    def primary(self) -> Answer:
        token = self.peek()
        if token.kind == "num":
            self.advance()
            return self.number(token.text)
        if token.kind == "word":
            return self.word()
        if token.kind == "env":
            return self.matrix()
        if token.kind == "cmd":
            return self.command()
        if token.text == "(" or token.text == "[":
            return self.bracketed()
        if token.text == "{":
            return self.group()
        if token.text == "|":
            self.advance()
            inner = self.expression()
            self.expect("|")
            return sympy.Abs(_expr(inner))
        found = "end of answer" if token.kind == "end" else repr(token.text)
        raise ParseFailure(f"expected a value but found {found}")

    def number(self, text: str) -> sympy.Expr:
        mantissa, _, exponent = text.lower().partition("e")
        digits = len(mantissa.replace(".", ""))
        if digits > self.limits.max_literal_digits:
            raise AnswerTooLarge(f"a number with {digits} digits (limit {self.limits.max_literal_digits})")
        value = sympy.Rational(mantissa.rstrip(".") or "0")
        if exponent:
            power = int(exponent)
            if abs(power) > self.limits.max_sci_exponent:
                raise AnswerTooLarge(f"scientific exponent {power} out of range")
            value = value * sympy.Integer(10) ** power
        return value

    def group(self) -> Answer:
        """`{...}`: LaTeX grouping (a set when it holds several comma-separated items)."""
        self.expect("{")
        self.depth += 1
        if self.depth > self.limits.max_nesting:
            raise AnswerTooLarge(f"nested more than {self.limits.max_nesting} levels deep")
        if self.at("}"):
            raise ParseFailure("empty braces {}")
        items = self.items(closers=("}",))
        self.expect("}")
        self.depth -= 1
        return items[0] if len(items) == 1 else SetOf(tuple(items))

    def bracketed(self) -> Answer:
        opening = self.advance().text
        self.depth += 1
        if self.depth > self.limits.max_nesting:
            raise AnswerTooLarge(f"nested more than {self.limits.max_nesting} levels deep")
        if self.at(")", "]"):
            closing = self.advance().text
            self.depth -= 1
            return Bracketed(opening, closing, ())
        items = self.items(closers=(")", "]"))
        closing = self.advance()
        if closing.text not in (")", "]"):
            found = "end of answer" if closing.kind == "end" else repr(closing.text)
            raise ParseFailure(f"unclosed {opening!r}: expected ')' or ']' but found {found}")
        self.depth -= 1
        if len(items) == 1 and (opening + closing.text) in ("()", "[]"):
            return items[0]
        return Bracketed(opening, closing.text, tuple(items))

    def argument(self) -> sympy.Expr:
        """A LaTeX macro argument: `{...}`, one digit of a number (`\\frac12`), or one symbol/command."""
        if self.at("{"):
            return _expr(self.group())
        token = self.peek()
        if token.kind == "num" and len(token.text) > 1:
            self.tokens[self.index] = Token("num", token.text[1:])
            return sympy.Integer(int(token.text[0]))
        return _expr(self.primary())

    def function_argument(self) -> sympy.Expr:
        """`\\sin(x)`, `\\sin x`, `\\sin 2x` (juxtaposed numbers and letters belong to the argument)."""
        if self.at("(", "{", "["):
            return _expr(self.primary())
        value = _expr(self.power())
        while self.peek().kind in ("num", "word") and self.peek().text not in ("and", "or", "in"):
            if self.peek().kind == "word" and self.peek().text in _FUNCTIONS:
                break
            value = sympy.Mul(value, _expr(self.power()))
        return value

    def word(self) -> Answer:
        text = self.advance().text
        if text in _INFINITY_WORDS:
            return sympy.oo
        if text == "pi":
            return sympy.pi
        if text == "e":
            return sympy.E
        if text == "i":
            return sympy.I
        if text == "sqrt":
            return self.guarded_pow(self.function_argument(), sympy.Rational(1, 2))
        if text == "log":
            return sympy.log(self.function_argument())
        if text in _FUNCTIONS:
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
        value = _FUNCTIONS[name](self.function_argument())
        return value if exponent is None else self.guarded_pow(value, exponent)

    def command(self) -> Answer:
        token = self.advance()
        name = token.text[1:]
        if token.text in _INFINITY_WORDS:
            return sympy.oo
        if name == "pi":
            return sympy.pi
        if name in _GREEK:
            return self.subscripted(name)
        if name == "frac":
            numerator = self.argument()
            denominator = self.argument()
            return sympy.Mul(numerator, sympy.Pow(denominator, -1))
        if name == "sqrt":
            index: sympy.Expr = sympy.Integer(2)
            if self.at("["):
                self.advance()
                index = _expr(self.expression())
                self.expect("]")
            radicand = _expr(self.primary()) if self.at("(") else self.argument()
            return self.guarded_pow(radicand, sympy.Pow(index, -1))
        if name == "binom":
            return self.guarded_binomial(self.argument(), self.argument())
        if name in _FUNCTIONS:
            return self.apply_function(name)
        if name == "log":
            base: sympy.Expr | None = None
            if self.at("_"):
                self.advance()
                base = self.argument()
            argument = self.function_argument()
            return sympy.log(argument) if base is None else sympy.log(argument, base)
        if token.text == r"\{":
            if self.peek().kind in ("word", "cmd") and self.peek(1).text in _SUCH_THAT:
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
            inner = _expr(self.expression())
            self.expect(r"\rfloor" if name == "lfloor" else r"\rceil")
            return sympy.floor(inner) if name == "lfloor" else sympy.ceiling(inner)
        if name in ("lvert", "vert", "|"):
            inner = _expr(self.expression())
            if not self.at(r"\rvert", r"\vert", r"\|"):
                raise ParseFailure("unclosed absolute value")
            self.advance()
            return sympy.Abs(inner)
        if token.text in _ACCENTS:
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
        if not begin.startswith(r"\begin") or environment not in _MATRIX_ENVS:
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
            rows[-1].append(_expr(self.item()))
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
            return first.lhs, _expr(first.rhs)
        return None, _expr(first)

    def big_operator(self, name: str) -> sympy.Expr:
        if not self.at("_"):
            raise ParseFailure(f"\\{name} needs bounds such as _{{k=1}}^{{n}}")
        self.advance()
        variable, lower = self.bound()
        self.expect("^")
        _, upper = self.bound()
        if variable is None:
            raise ParseFailure(f"\\{name} lower bound must name the index variable, e.g. _{{k=1}}")
        body = _expr(self.term())
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
        body = _expr(_Parser(body_tokens, self.limits).answer())
        if lower is None or upper is None:
            return sympy.integrate(body, variable)
        return sympy.integrate(body, (variable, lower, upper))

    # -- size-checked constructors -------------------------------------------------------------------------
    def guarded_pow(self, base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
        """base**exponent, refusing exact results too large to compute or hold."""
        if exponent.is_Rational and not base.free_symbols:
            magnitude = abs(exponent)
            if base.is_Rational:
                bits = max(abs(base.p).bit_length(), base.q.bit_length())
                if bits > 1 and magnitude * bits > self.limits.max_integer_bits:
                    raise AnswerTooLarge("a power whose exact value would exceed the size limit")
            elif magnitude > self.limits.max_symbolic_exponent and base not in (sympy.pi, sympy.E):
                raise AnswerTooLarge("a power with an exponent beyond the size limit")
        elif exponent.is_Rational and abs(exponent) > self.limits.max_symbolic_exponent:
            raise AnswerTooLarge("a symbolic power with an exponent beyond the size limit")
        elif exponent.is_number and not exponent.is_Rational and not base.free_symbols:
            approx = exponent.evalf(15)
            if approx.is_real and abs(approx) > self.limits.max_symbolic_exponent:
                raise AnswerTooLarge("a power with an exponent beyond the size limit")
        return sympy.Pow(base, exponent)

    def guarded_factorial(self, value: sympy.Expr) -> sympy.Expr:
        if value.is_number and not value.free_symbols:
            if not value.is_Integer:
                raise ParseFailure("factorial of a non-integer")
            if value > self.limits.max_factorial:
                raise AnswerTooLarge(f"factorial of a number above {self.limits.max_factorial}")
            if value < 0:
                raise ParseFailure("factorial of a negative number")
        return sympy.factorial(value)

    def guarded_binomial(self, top: sympy.Expr, bottom: sympy.Expr) -> sympy.Expr:
        if top.is_Integer and abs(top) > self.limits.max_binomial:
            raise AnswerTooLarge(f"binomial coefficient with n above {self.limits.max_binomial}")
        if bottom.is_Integer and abs(bottom) > self.limits.max_binomial:
            raise AnswerTooLarge(f"binomial coefficient with k above {self.limits.max_binomial}")
        return sympy.binomial(top, bottom)


def _expr(value: Answer) -> sympy.Expr:
    """value as a sympy expression, or ParseFailure when it is a list, set, relation or text."""
    if isinstance(value, sympy.Expr):
        if value.has(sympy.zoo, sympy.nan):
            raise ParseFailure("undefined value (division by zero)")
        return value
    if isinstance(value, sympy.MatrixBase):
        return value  # type: ignore[return-value]
    raise ParseFailure("a list, set, interval or relation used inside arithmetic")


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "})]":
            depth -= 1
    return deepest


_WORD_RUN = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
# Function and set words are math, not prose; the tokenizer's list, where a run can match (3+ letters).
_MATH_WORDS = frozenset(word for word in KNOWN_WORDS if len(word) >= 3)


def looks_like_text(normalized: str) -> bool:
    """Whether an answer is words rather than math (`Monday`, `yes`, `no solution`)."""
    without_environments = re.sub(r"\\(?:begin|end)\{[a-zA-Z*]+\}", " ", normalized)
    return any(word.lower() not in _MATH_WORDS for word in _WORD_RUN.findall(without_environments))


def expand_plus_minus(normalized: str, limits: Limits) -> list[str]:
    r"""`1 \pm \sqrt{2}` -> [`1 + \sqrt{2}`, `1 - \sqrt{2}`]; one string per sign choice."""
    count = len(re.findall(r"\\(?:pm|mp)(?![a-zA-Z])", normalized))
    if count == 0:
        return [normalized]
    if count > limits.max_plus_minus:
        raise AnswerTooLarge(f"more than {limits.max_plus_minus} \\pm signs")
    variants = [normalized]
    for _ in range(count):
        expanded = []
        for variant in variants:
            match = re.search(r"\\(pm|mp)(?![a-zA-Z])", variant)
            assert match is not None
            first, second = ("+", "-") if match.group(1) == "pm" else ("-", "+")
            expanded.append(variant[: match.start()] + first + variant[match.end() :])
            expanded.append(variant[: match.start()] + second + variant[match.end() :])
        variants = expanded
    return variants


def parse_math(normalized: str, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Parse one normalised answer (no \\pm) into a sympy object or an answers container."""
    if len(normalized) > limits.max_answer_chars:
        raise AnswerTooLarge(f"answer longer than {limits.max_answer_chars} characters")
    if not normalized:
        raise ParseFailure("empty answer")
    if _nesting_depth(normalized) > limits.max_nesting:
        raise AnswerTooLarge(f"nested more than {limits.max_nesting} levels deep")
    text = _MIXED_NUMBER.sub(_mixed_number, normalized)
    return _Parser(tokenize(text), limits).answer()


def parse_answer(normalized: str, limits: Limits = DEFAULT_LIMITS) -> Answer:
    """Parse a normalised answer: text answers become Text, `\\pm` expands into an AnswerList."""
    if len(normalized) > limits.max_answer_chars:
        raise AnswerTooLarge(f"answer longer than {limits.max_answer_chars} characters")
    if looks_like_text(normalized):
        return Text(normalized)
    variants = expand_plus_minus(normalized, limits)
    if len(variants) == 1:
        return parse_math(variants[0], limits)
    parsed: list[Answer] = []
    for variant in variants:
        value = parse_math(variant, limits)
        parsed.extend(value.items if isinstance(value, AnswerList) else [value])
    return AnswerList(tuple(parsed))
