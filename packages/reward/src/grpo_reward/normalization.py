"""Turn an extracted answer into a canonical LaTeX-ish string the parser and text comparison can use.

Normalisation removes what changes the look of an answer but not its value: `\\left`/`\\right`,
`\\dfrac`, spacing commands, `\\text{}` wrappers and unit words, degree signs, percent and dollar signs,
thousands separators, trailing periods. It never changes the value: `1,000` loses its comma only when
the whole answer is that one number (so the tuple `(100,200)` keeps it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

_UNICODE = {
    "−": "-",
    "–": "-",
    "×": r"\times ",
    "·": r"\cdot ",
    "÷": r"\div ",
    "√": r"\sqrt",
    "π": r"\pi ",
    "∞": r"\infty ",
    "≤": r"\leq ",
    "≥": r"\geq ",
    "≠": r"\neq ",
    "∪": r"\cup ",
    "∩": r"\cap ",
    "∈": r"\in ",
    "±": r"\pm ",
    "≈": r"\approx ",
    "°": "",
    "ℝ": r"\mathbb{R}",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
}

# Commands that only change typography: drop the name, keep the braces (they still group).
_DROP_COMMANDS = re.compile(
    r"\\(?:displaystyle|textstyle|scriptstyle|mathrm|mathbf|mathit|mathsf|mathtt|mathnormal|boldsymbol|bm"
    r"|mathbb|mathcal|text|textbf|textit|textrm|texttt|textsf|textnormal|mbox|hbox|emph|operatorname"
    r"|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg|limits|nolimits|ensuremath)(?![a-zA-Z])"
)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|hbox|mathrm|emph)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\\\|\\(?:quad|qquad|enspace|thinspace|medspace|thickspace)(?![a-zA-Z])|\\[,;: ]|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|middle)(?![a-zA-Z])\s*(\.|\\?[()\[\]{}|]|\\[a-zA-Z]+)?")
_DEGREES = re.compile(
    r"\^\s*+\{?\s*+\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}"
)
# A number of degrees inside a trigonometric function is an angle: `\cos 30^\circ` is cos(π/6), not cos 30.
_TRIG = re.compile(r"(?<![a-zA-Z])(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])")
_ANGLE = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)\s*+(?:" + _DEGREES.pattern + ")")
_REALS = re.compile(r"\\mathbb\s*(?:\{\s*R\s*\}|R(?![a-zA-Z]))(?!\s*\^)")  # ℝ as an answer: the real line
# A whole answer that is one number with thousands separators: `1,000`, `1 000` (one separator kind).
_WHOLE_THOUSANDS = re.compile(r"^-?\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?$")
_BRACED_COMMA = re.compile(r"(\d)\s*+\{\s*+,\s*+\}\s*+(\d)")  # `14 {, }916`, `1{,}000`
_COMMA_THIN_SPACE = re.compile(r",\s*+\\!\s*+")  # `11,\! 111`
# Spacing glued to the next word, as datasets store it: `x_1=1,\quadx_2=2`.
# `x_1=1 \quad x_2=2`: a \quad between a value and the next `name =` separates two answers.
_QUAD_SEPARATOR = re.compile(
    r"(?<=[\w})])[ \t]*+\\q?quad(?![a-zA-Z])[ \t]*+(?=[a-zA-Z]++(?:_\{\w++\}|_\w)?[ \t]*+=)"
)
_ENDS_IN_TEXT = re.compile(r"\\text\s*+\{[^{}]*+\}$")  # `\text{and}\quad x = 2` is joined already
_GLUED_SPACING = re.compile(r"\\q?quad(?=[a-zA-Z])")
_GLUED_PRODUCT = re.compile(r"\\(cdot(?=[a-rt-zA-Z])|times(?=[a-zA-Z]))")  # `2\cdotx` (never `\cdots`)
_THIN_SPACE_THOUSANDS = re.compile(r"(?<=\d)\\,(?=\d{3}(?!\d))")  # `3\,000\,000`
_FRAC = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_BINOM = re.compile(r"\\[dt]binom(?![a-zA-Z])")
_LESS_EQUAL = re.compile(r"\\(?:le|leqslant)(?![a-zA-Z])")
_GREATER_EQUAL = re.compile(r"\\(?:ge|geqslant)(?![a-zA-Z])")
_NOT_EQUAL = re.compile(r"\\ne(?![a-zA-Z])")
_COLON = re.compile(r"\\colon(?![a-zA-Z])")
_BLANKS = re.compile(r"\s+")
_BRACED_WHOLE = re.compile(r"^\{\s*([^{}]*)\s*\}$")
_LESS_GREATER = re.compile(r"\\(lt|gt)(?![a-zA-Z])")
_OVERLINE = re.compile(r"(?<!\d)(\d*)\.(\d*)\\overline\{(\d+)\}")  # starts only where a digit run starts
_IN_PREFIX = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s*")
# A value named in words (`\text{Area} = 24`, `Total cost = 12`): the words only name it.
_WORD_LABEL = re.compile(r"^(?=[a-zA-Z ]*[a-zA-Z]{3})[a-zA-Z][a-zA-Z ]*=(?![=<>])\s*")

_UNIT_WORDS = {
    "cm",
    "m",
    "km",
    "mm",
    "meter",
    "meters",
    "metre",
    "metres",
    "centimeter",
    "centimeters",
    "inch",
    "inches",
    "in",
    "foot",
    "feet",
    "ft",
    "yard",
    "yards",
    "yd",
    "mile",
    "miles",
    "mi",
    "mph",
    "kph",
    "kmh",
    "second",
    "seconds",
    "sec",
    "s",
    "minute",
    "minutes",
    "min",
    "mins",
    "hour",
    "hours",
    "hr",
    "hrs",
    "h",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "unit",
    "units",
    "square",
    "sq",
    "cubic",
    "degree",
    "degrees",
    "deg",
    "dollar",
    "dollars",
    "cent",
    "cents",
    "percent",
    "percentage",
    "percentages",
    "pct",
    "kg",
    "g",
    "gram",
    "grams",
    "kilogram",
    "kilograms",
    "mg",
    "pound",
    "pounds",
    "lb",
    "lbs",
    "ounce",
    "ounces",
    "oz",
    "liter",
    "liters",
    "litre",
    "litres",
    "l",
    "ml",
    "gallon",
    "gallons",
    "gal",
    "cup",
    "cups",
    "quart",
    "quarts",
    "people",
    "person",
    "students",
    "student",
    "apples",
    "times",
    "ways",
    "points",
    "pages",
    "books",
    "items",
    "cookies",
    "marbles",
    "balls",
    "cars",
    "boxes",
    "hours.",
    "radians",
    "rad",
    "sq.",
    "ft.",
    "per",
    "kilometer",
    "kilometers",
    "kilometre",
    "kilometres",
    "centimetre",
    "centimetres",
    "millimeter",
    "millimeters",
    "millimetre",
    "millimetres",
    "milliliter",
    "milliliters",
    "millilitre",
    "millilitres",
    "newton",
    "newtons",
    "joule",
    "joules",
    "watt",
    "watts",
    "volt",
    "volts",
    "ampere",
    "amperes",
    "amp",
    "amps",
    "ohm",
    "ohms",
    "pascal",
    "pascals",
    "hertz",
    "calorie",
    "calories",
    "kcal",
    "ton",
    "tons",
    "tonne",
    "tonnes",
    "acre",
    "acres",
    "hectare",
    "hectares",
}
# Case-sensitive SI symbols that are also common letters: units only when a blank or `\text{}` sets them off.
_UNIT_SYMBOLS = frozenset(
    {"N", "J", "W", "V", "Pa", "kPa", "MPa", "Hz", "kHz", "kW", "MW", "kJ", "kN", "mA", "kWh"}
)
_UNIT_WORD = re.compile(r"[a-zA-Z.]+")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.")
_UNIT_ALPHABET = "".join(sorted(_WORD_CHARS)) + "0123456789^{}/- \t\n\r\f\v"


def _replace_overline(match: re.Match[str]) -> str:
    """`0.\\overline{3}` -> `\\frac{1}{3}`: a repeating decimal written with an overline, exactly."""
    whole, fixed, period = match.group(1) or "0", match.group(2), match.group(3)
    if len(fixed) + len(period) > 40:
        return match.group(0)
    scale = 10 ** len(fixed)
    repeat = Fraction(int(period), (10 ** len(period) - 1) * scale)
    value = Fraction(int(whole)) + Fraction(int(fixed or "0"), scale) + repeat
    return rf"\frac{{{value.numerator}}}{{{value.denominator}}}"


def _strip_math_delimiters(text: str) -> str:
    """Strip `$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]` around the whole text, repeatedly, by index."""
    start, end = _inner_span(text, 0, len(text))
    changed = True
    while changed and start < end:
        changed = False
        for opening, closing in (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")):
            if (
                text.startswith(opening, start, end)
                and text.endswith(closing, start, end)
                and end - start >= len(opening) + len(closing)
            ):
                start, end = _inner_span(text, start + len(opening), end - len(closing))
                changed = True
    return text[start:end]


def _inner_span(text: str, start: int, end: int) -> tuple[int, int]:
    """text[start:end] without its leading and trailing whitespace, as indices."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _unit_suffixes(text: str, start: int) -> list[bool]:
    """unit[i - start]: whether text[i:] is a run of unit words, maybe with powers (` cm^2`, ` m/s^{-2}`).

    Words are `[a-zA-Z.]+`; a word may carry a power `^d`, `^{d}` or `^{-d}`; words are separated by blanks
    or a `/`. Every suffix is decided at once by running the automaton right to left (a backtracking regex
    tried at each start is exponential here). States: 0 start or after `/`, 1 after a word, 2 after a
    power, 3 after `^`, 4 after `^{`, 5 after a power's digit, 6 after a power's minus sign.
    """
    after = (False, True, True, False, False, True, False)  # acceptance from each state at the text's end
    unit = [False] * (len(text) + 1 - start)
    for index in range(len(text) - 1, start - 1, -1):
        char = text[index]
        word, space, digit, slash = char in _WORD_CHARS, char.isspace(), char in "0123456789", char == "/"
        after = (
            (space and after[0]) or (word and after[1]),
            ((space or word) and after[1]) or (char == "^" and after[3]) or (slash and after[0]),
            (space and after[2]) or (word and after[1]) or (slash and after[0]),
            (char == "{" and after[4]) or (digit and after[5]) or (char == "-" and after[6]),
            (digit and after[5]) or (char == "-" and after[6]),
            ((space or char == "}") and after[2]) or (word and after[1]) or (slash and after[0]),
            digit and after[5],
        )
        unit[index - start] = after[0]
    return unit


def _is_unit(word: str, spaced: bool) -> bool:
    """A unit word (any case), or an SI symbol such as `N` or `kPa` when a blank parts it from the value."""
    return word == "." or word.lower().strip(".") in _UNIT_WORDS or (spaced and word in _UNIT_SYMBOLS)


def _strip_units(text: str) -> str:
    """Remove unit words after a value: `5 cm^2` -> `5`, `12 dollars` -> `12`, `3 m/s` -> `3` (linear time).

    The value is the shortest prefix ending in a digit, `}`, `)` or `.` that unit words follow; when any of
    those words is not a known unit the text is left as it is. Only the text's last run of characters that
    can appear in units needs the automaton.
    """
    start = len(text.rstrip(_UNIT_ALPHABET))
    unit = _unit_suffixes(text, start)
    for end in range(max(start, 1), len(text)):
        if unit[end - start] and (text[end - 1] in "})." or text[end - 1].isdecimal()):
            spaced = text[end].isspace()
            if all(_is_unit(word, spaced) for word in _UNIT_WORD.findall(text, end)):
                return text[:end].strip()
            return text
    return text


def _quad_separator(match: re.Match[str]) -> str:
    """ ", " for a \\quad that separates two answers, unless a word such as `\\text{and}` already does."""
    start = match.start()
    return match.group(0) if _ENDS_IN_TEXT.search(match.string, max(0, start - 40), start) else ", "


def _latex_forms(text: str) -> str:
    """The normalisation steps that only a backslash can start (`\\dfrac`, `\\left(`, `\\text{}`,
    `^\\circ`, `\\,`, ...), in order; skipped as a whole for the many answers that have none."""
    text = _THIN_SPACE_THOUSANDS.sub("", text)
    text = _QUAD_SEPARATOR.sub(_quad_separator, text)
    text = _GLUED_SPACING.sub(" ", text)
    text = _GLUED_PRODUCT.sub(r"\\\1 ", text)
    text = _FRAC.sub(r"\\frac", text)
    text = _BINOM.sub(r"\\binom", text)
    text = _LEFT_RIGHT.sub(lambda m: "" if (m.group(1) or ".") == "." else m.group(1), text)
    if _TRIG.search(text):
        text = _ANGLE.sub(r"(\1\\cdot\\frac{\\pi}{180})", text)
    text = _DEGREES.sub("", text)
    text = _REALS.sub(r"(-\\infty, \\infty)", text)
    text = text.replace(r"\!", "")
    text = _SPACING.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", text)
    for _ in range(3):  # \text{ cm} -> " cm ": text wrappers lose their braces so words stay words
        text = _TEXT_WRAPPER.sub(r" \1 ", text)
    text = _DROP_COMMANDS.sub("", text)
    text = _LESS_EQUAL.sub(r"\\leq", text)
    text = _GREATER_EQUAL.sub(r"\\geq", text)
    text = _NOT_EQUAL.sub(r"\\neq", text)
    text = _COLON.sub(":", text)
    text = _LESS_GREATER.sub(lambda match: "<" if match.group(1) == "lt" else ">", text)
    return _OVERLINE.sub(_replace_overline, text)


def normalize_answer(text: str) -> str:
    """Canonical form of an answer string (see module docstring); pure and cheap."""
    if "°" in text and _TRIG.search(text):
        text = text.replace("°", r"^{\circ}")  # an angle in a trigonometric function: see _ANGLE
    for old, new in _UNICODE.items():
        if old in text:
            text = text.replace(old, new)
    text = _strip_math_delimiters(text)
    text = text.replace(r"\$", "").replace(r"\textdollar", "").replace(r"\%", "").replace("%", "")
    text = text.replace("$", "")
    if "," in text:
        text = _BRACED_COMMA.sub(r"\1\2", text).replace("{,}", "")
        text = _COMMA_THIN_SPACE.sub(",", text)
    if "\\" in text:
        text = _latex_forms(text)
    elif "~" in text:
        text = text.replace("~", " ")
    text = _BLANKS.sub(" ", text).strip()
    text = _BRACED_WHOLE.sub(r"\1", text)
    text = text.rstrip(" .;")
    text = _IN_PREFIX.sub("", text)
    if "=" in text:
        text = _WORD_LABEL.sub("", text)
    text = _strip_units(text)
    text = _BRACED_WHOLE.sub(r"\1", text).strip()
    if _WHOLE_THOUSANDS.match(text):
        text = text.replace(",", "").replace(" ", "")
    return text


def normalize_answers(parts: Sequence[str]) -> str:
    """Several answers (the boxes of one completion) as one answer list: each normalised on its own (so
    `1,000` in one box stays a thousand), duplicates dropped, joined by ", "."""
    return ", ".join(dict.fromkeys(normal for normal in map(normalize_answer, parts) if normal))


def normalize_text(text: str) -> str:
    """Case- and space-insensitive form of a text answer (`\\text{Monday}` = `monday`, `(C)` = `c`)."""
    text = re.sub(r"\s+", "", normalize_answer(text).lower()).strip(".")
    choice = re.fullmatch(r"\(?([a-z])\)?", text)
    return choice.group(1) if choice else text
