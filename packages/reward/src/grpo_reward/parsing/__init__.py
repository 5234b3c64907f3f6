r"""A recursive-descent parser for LaTeX and plain-text math answers that builds sympy objects directly.

Untrusted text never reaches eval, exec, sympify or parse_expr: the tokenizer admits a fixed alphabet, the
grammar admits a fixed set of constructs, and every node is built by calling a sympy constructor. Powers,
factorials, binomials and sums are size-checked *before* sympy evaluates them, so `10^{10^{10}}` or
`(10^{100})!` raise AnswerTooLarge instead of running for hours.

The modules, in the order an answer meets them:
    entry_points      text or math, `\pm` expansion, whole-string caps, mixed numbers
    grammar           the operator-precedence grammar (lists, unions, relations, arithmetic, brackets)
    latex_constructs  commands, functions, words, matrices, sums, integrals
    vocabulary        the fixed tables of relations, operators, functions and names the grammar knows
    size_guards       the size-checked sympy constructors
    token_cursor      the position in the token list both halves of the grammar share
"""

from grpo_reward.parsing.entry_points import expand_plus_minus, looks_like_text, parse_answer, parse_math

__all__ = ["expand_plus_minus", "looks_like_text", "parse_answer", "parse_math"]
