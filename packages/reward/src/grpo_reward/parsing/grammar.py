r"""The operator-precedence half of the recursive-descent answer parser: lists, unions, relations, arithmetic.

Grammar (lowest precedence first):
    answer   := item ((',' | ';' | 'and') item)*
    item     := relation (('\cup' | 'or') relation)*
    relation := ratio (relop ratio)*
    ratio    := expr (':' expr)*                                         (`7:32` is 7/32)
    expr     := term (('+' | '-') term)*
    term     := unary (('*' | '/' | '\cdot' | '\times' | '\div')? unary)*    (juxtaposition multiplies)
    unary    := ('-' | '+') unary | power
    power    := postfix (('^' | '**') unary)?
    postfix  := primary '!'*
    primary  := number | symbol | constant | function | \frac | \sqrt | \binom | group | bracketed
              | set | |abs| | floor/ceil | matrix | \sum | \prod | \int

Numbers, groups and brackets are parsed here; symbols, constants, functions and every LaTeX command or
environment are parsed by latex_constructs.LatexConstructs, which this class completes.
"""

from __future__ import annotations

import sympy

from grpo_reward.answers import Answer, AnswerList, Bracketed, Chain, SetOf, UnionOf
from grpo_reward.limits import AnswerTooLarge, ParseFailure
from grpo_reward.parsing.latex_constructs import LatexConstructs
from grpo_reward.parsing.size_guards import as_expr, guarded_factorial, guarded_pow, number_literal
from grpo_reward.parsing.vocabulary import DIVIDE, MULTIPLY, RELATIONS


class Parser(LatexConstructs):
    """One parse of one token list; see the module docstring for the grammar."""

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
        left = self.ratio()
        relations: list[sympy.Basic] = []
        while True:
            token = self.peek()
            if token.text == r"\in":
                self.advance()
                return self.expression()
            if token.text not in RELATIONS or token.kind == "end":
                break
            self.advance()
            right = self.ratio()
            if token.text in ("=", "==") and not isinstance(right, sympy.Basic) and _names(left, right):
                return right  # `x = (1, 2)`, `(p, q) = (3, 2)`: the names add nothing
            relations.append(RELATIONS[token.text](as_expr(left), as_expr(right), evaluate=False))
            left = right
        if not relations:
            return left
        return relations[0] if len(relations) == 1 else Chain(tuple(relations))

    def ratio(self) -> Answer:
        """`a:b` is the number a/b (so `14:64` = `7:32` = `\\frac{7}{32}`); `a:b:c` is the tuple
        (1, b/a, c/a), so equal ratios compare equal whatever their scale."""
        parts = [self.expression()]
        while self.at(":"):
            self.advance()
            parts.append(self.expression())
        if len(parts) == 1:
            return parts[0]
        first, *rest = (as_expr(part) for part in parts)
        if len(rest) == 1:
            return sympy.Mul(first, sympy.Pow(rest[0], -1))
        return Bracketed(
            ":", ":", (sympy.Integer(1), *(sympy.Mul(part, sympy.Pow(first, -1)) for part in rest))
        )

    def expression(self) -> Answer:
        value = self.term()
        while self.at("+", "-"):
            sign = self.advance().text
            right = as_expr(self.term())
            value = sympy.Add(as_expr(value), right if sign == "+" else -right)
        return value

    def term(self) -> Answer:
        value = self.unary()
        while True:
            if self.at(*MULTIPLY):
                self.advance()
                value = sympy.Mul(as_expr(value), as_expr(self.unary()))
            elif self.at(*DIVIDE):
                self.advance()
                value = sympy.Mul(as_expr(value), sympy.Pow(as_expr(self.unary()), -1))
            elif self.starts_factor():
                value = sympy.Mul(as_expr(value), as_expr(self.power()))
            else:
                return value

    def starts_factor(self) -> bool:
        """Whether the next token can begin an implicitly multiplied factor (`2x`, `x(x+1)`, `2\\sqrt{3}`)."""
        token = self.peek()
        if token.kind in ("num", "word"):
            return token.text not in ("and", "or", "in", "cup", "U")
        if token.kind == "cmd":
            return token.text not in RELATIONS and token.text not in MULTIPLY | DIVIDE | {
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
                return -as_expr(self.unary())
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
            return guarded_pow(as_expr(base), as_expr(exponent), self.limits)
        return base

    def postfix(self) -> Answer:
        value = self.primary()
        while self.at("!"):
            self.advance()
            value = guarded_factorial(as_expr(value), self.limits)
        return value

    # -- primaries -----------------------------------------------------------------------------------------
    def primary(self) -> Answer:
        token = self.peek()
        if token.kind == "num":
            self.advance()
            return number_literal(token.text, self.limits)
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
            return sympy.Abs(as_expr(inner))
        found = "end of answer" if token.kind == "end" else repr(token.text)
        raise ParseFailure(f"expected a value but found {found}")

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


def _names(left: Answer, right: Answer) -> bool:
    """Whether `left = right` only names a tuple: a symbol, a tuple of symbols as long as `right`, or a
    ratio of symbols (`a:b:c = 1:2:3`, whose left side reads (1, b/a, c/a))."""
    if isinstance(left, sympy.Symbol):
        return True
    if not (
        isinstance(left, Bracketed) and isinstance(right, Bracketed) and len(left.items) == len(right.items)
    ):
        return False
    if left.opening == ":":
        return all(item == 1 or (isinstance(item, sympy.Expr) and item.free_symbols) for item in left.items)
    return all(isinstance(item, sympy.Symbol) for item in left.items)
