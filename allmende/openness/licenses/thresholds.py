"""User and revenue thresholds: "more than 700 million monthly active users", "100M MAU".

Quantities are read from `text.words` tokens: "700 million", "700,000,000", "100M", "2.5 billion",
"one hundred million".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_SCALES = {
    "thousand": 10**3,
    "k": 10**3,
    "million": 10**6,
    "millions": 10**6,
    "mn": 10**6,
    "mio": 10**6,
    "m": 10**6,
    "mm": 10**6,
    "billion": 10**9,
    "billions": 10**9,
    "bn": 10**9,
    "b": 10**9,
    "trillion": 10**12,
}
_NUMERIC = re.compile(r"^[$\u20ac\u00a3]?(\d+(?:\.\d+)?)(k|m|mm|mn|b|bn)?$")


@dataclass(frozen=True)
class Quantity:
    value: int
    first: int  # index of the first token
    last: int  # index of the last token (inclusive)


def quantities(tokens: list[str]) -> list[Quantity]:
    """Every quantity in a list of `text.words` tokens, with the token range it covers."""
    found: list[Quantity] = []
    i = 0
    while i < len(tokens):
        q = _numeric_at(tokens, i) or _spelled_at(tokens, i)
        if q is None:
            i += 1
            continue
        found.append(q)
        i = q.last + 1
    return found


def _numeric_at(tokens: list[str], i: int) -> Quantity | None:
    m = _NUMERIC.match(tokens[i])
    if m is None:
        return None
    value = float(m.group(1))
    last = i
    if m.group(2):
        value *= _SCALES[m.group(2)]
    elif i + 1 < len(tokens) and tokens[i + 1] in _SCALES and tokens[i + 1] != "b":
        value *= _SCALES[tokens[i + 1]]
        last = i + 1
    return Quantity(round(value), i, last)


def _spelled_at(tokens: list[str], i: int) -> Quantity | None:
    """English number words: "seven hundred million", "one hundred and fifty thousand"."""
    total = current = 0
    last = -1
    j = i
    while j < len(tokens):
        w = tokens[j]
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred" and last >= 0:
            current = max(current, 1) * 100
        elif w in ("thousand", "million", "billion", "trillion") and (last >= 0 or w != "b"):
            total += max(current, 1) * _SCALES[w]
            current = 0
        elif w == "a" and j == i and j + 1 < len(tokens) and tokens[j + 1] in _SCALES:
            current = 1  # "a million users"
        elif w == "and" and last >= 0 and j + 1 < len(tokens) and _is_number_word(tokens[j + 1]):
            pass
        else:
            break
        if w != "and":
            last = j
        j += 1
    if last < 0 or (last == i and tokens[i] == "a"):
        return None
    return Quantity(total + current, i, last)


def _is_number_word(w: str) -> bool:
    return w in _UNITS or w in _TENS or w in ("hundred", "thousand", "million", "billion")


_USERS = re.compile(
    r"\b(?:users?|mau|maus|dau|daus|subscribers?|customers?|user base|accounts|visitors"
    r"|installations|members)\b"
)
_MONEY = re.compile(
    r"\b(?:revenues?|turnover|sales|income|arr|earnings|\$\S*|usd|eur|dollars?|euros?)\b"
)
_COMPARE = re.compile(
    r"\b(?:exceed\w*|more than|greater than|over|above|in excess of|at least|surpass\w*"
    r"|reach\w*|beyond|larger than|higher than|or more|threshold|fewer than|less than"
    r"|no more than|not more than|below|under|up to|maximum|cap|capped|limit\w*|upwards of)\b"
)
_CONDITION = re.compile(
    r"\b(?:if|where|when|whenever|whose|unless|once|until|provided|in the event|you|your"
    r"|licensee\w*|licen[cs]e\w*|must|shall|may|need\w*|requir\w*|entitled|permitted|allowed"
    r"|grant\w*|rights?)\b"
)
_NOT_A_THRESHOLD = re.compile(
    r"\b(?:section|version|clause|article|paragraph|days?|years?|months?)$"
)


def user_threshold(tokens: list[str]) -> int | None:
    """The user (or else revenue) threshold of a sentence given as `text.words` tokens."""
    best: tuple[int, int] | None = None  # (rank, value); users rank above revenue
    if not _CONDITION.search(" ".join(tokens)):
        return None  # a statement of fact ("used by 10 million users"), not a condition
    for q in quantities(tokens):
        if q.value < 10_000:
            continue
        before = " ".join(tokens[max(0, q.first - 8) : q.first])
        after = " ".join(tokens[q.last + 1 : q.last + 7])
        if _NOT_A_THRESHOLD.search(before) or re.match(r"(?:days?|years?)\b", after):
            continue
        near = before + " | " + after
        if not (
            _COMPARE.search(" ".join(tokens[max(0, q.first - 6) : q.first]))
            or re.match(r"(?:\S+ ){0,4}or (?:more|above|greater|higher)\b", after)
        ):
            continue
        if _USERS.search(after) or _USERS.search(" ".join(tokens[max(0, q.first - 8) : q.first])):
            rank = 2
        elif _MONEY.search(near) or tokens[q.first].startswith("$"):
            rank = 1
        else:
            continue
        if best is None or rank > best[0]:
            best = (rank, q.value)
    return best[1] if best else None
