"""Turn an extracted answer into a canonical LaTeX-ish string the parser and text comparison can use.

Normalisation removes what changes the look of an answer but not its value: `\\left`/`\\right`,
`\\dfrac`, spacing commands, `\\text{}` wrappers and unit words, degree signs, percent and dollar signs,
thousands separators, trailing periods. It never changes the value: `1,000` loses its comma only when
the whole answer is that one number (so the tuple `(100,200)` keeps it).
"""

from __future__ import annotations

import re
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
    "°": "",
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
    r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}"
)
_WHOLE_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_OVERLINE = re.compile(r"(\d*)\.(\d*)\\overline\{(\d+)\}")
_IN_PREFIX = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s*")

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
}
_TRAILING_UNITS = re.compile(r"^(?P<value>.*?[\d}).])\s*(?P<units>(?:[a-zA-Z.]+(?:\s*\^\{?\d\}?)?\s*)+)$")


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
    text = text.strip()
    changed = True
    while changed and text:
        changed = False
        for opening, closing in (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")):
            if (
                text.startswith(opening)
                and text.endswith(closing)
                and len(text) >= len(opening) + len(closing)
            ):
                text = text[len(opening) : len(text) - len(closing)].strip()
                changed = True
    return text


def _strip_units(text: str) -> str:
    """Remove unit words after a value: `5 cm^2` -> `5`, `12 dollars` -> `12`."""
    match = _TRAILING_UNITS.match(text)
    if not match:
        return text
    words = re.findall(r"[a-zA-Z.]+", match.group("units"))
    if words and all(word.lower().strip(".") in _UNIT_WORDS or word == "." for word in words):
        return match.group("value").strip()
    return text


def normalize_answer(text: str) -> str:
    """Canonical form of an answer string (see module docstring); pure and cheap."""
    for old, new in _UNICODE.items():
        if old in text:
            text = text.replace(old, new)
    text = _strip_math_delimiters(text)
    text = text.replace(r"\$", "").replace(r"\%", "").replace("%", "")
    text = text.replace("$", "")
    text = text.replace("{,}", "")
    text = re.sub(r"(\d)\\,(\d{3})(?!\d)", r"\1\2", text)
    text = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", text)
    text = re.sub(r"\\[dt]binom(?![a-zA-Z])", r"\\binom", text)
    text = _LEFT_RIGHT.sub(lambda m: "" if (m.group(1) or ".") == "." else m.group(1), text)
    text = _DEGREES.sub("", text)
    text = text.replace(r"\!", "")
    text = _SPACING.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", text)
    for _ in range(3):  # \text{ cm} -> " cm ": text wrappers lose their braces so words stay words
        text = _TEXT_WRAPPER.sub(r" \1 ", text)
    text = _DROP_COMMANDS.sub("", text)
    text = re.sub(r"\\(?:le|leqslant)(?![a-zA-Z])", r"\\leq", text)
    text = re.sub(r"\\(?:ge|geqslant)(?![a-zA-Z])", r"\\geq", text)
    text = re.sub(r"\\ne(?![a-zA-Z])", r"\\neq", text)
    text = _OVERLINE.sub(_replace_overline, text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^\{\s*([^{}]*)\s*\}$", r"\1", text)
    text = text.rstrip(" .;")
    text = _IN_PREFIX.sub("", text)
    text = _strip_units(text)
    text = re.sub(r"^\{\s*([^{}]*)\s*\}$", r"\1", text).strip()
    if _WHOLE_THOUSANDS.match(text):
        text = text.replace(",", "")
    return text


def normalize_text(text: str) -> str:
    """Case- and space-insensitive form of a text answer (`\\text{Monday}` = `monday`, `(C)` = `c`)."""
    text = re.sub(r"\s+", "", normalize_answer(text).lower()).strip(".")
    choice = re.fullmatch(r"\(?([a-z])\)?", text)
    return choice.group(1) if choice else text
