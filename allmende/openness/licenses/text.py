"""Licence text plumbing: sentence segmentation with character offsets, and normalisation.

Segmentation is deliberately simple and predictable: a licence is cut into blocks at blank lines
and at list items ("(a)", "1.", "iv)", "-"), each block into sentences at ". ", "! " and "? "
followed by a capital, a digit or an opening bracket (not after common abbreviations such as
"e.g." or "Inc."), and very long sentences (legal lists) further at semicolons. Every sentence
is a `Sentence` whose `start`/`end` index the original text, so `text[start:end] == sentence.text`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Words after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    "e.g i.e inc ltd co corp no nos vs etc mr mrs ms dr st sec art para fig cf al u.s u.k "
    "jan feb mar apr jun jul aug sep sept oct nov dec approx incl esp resp".split()
)
_BLOCK_BREAK = re.compile(
    r"\n[ \t]*\n\s*"  # a blank line
    r"|\n(?=[ \t]*(?:\(?[0-9]{1,2}(?:\.[0-9]{1,2})*[.)]|\(?[a-zA-Z]{1,4}\)|[-*\u2022])[ \t])"
)
_SENTENCE_END = re.compile(r"[.!?][\"'\u2019\u201d)\]]*\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9])")
_LONG = 400
_SOFT_BREAK = re.compile(r";\s+|:[ \t]*\n\s*")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str


def sentences(text: str) -> list[Sentence]:
    """Split `text` into trimmed sentences with exact character offsets."""
    out: list[Sentence] = []
    for b_start, b_end in _cut(text, 0, len(text), _BLOCK_BREAK):
        for s_start, s_end in _split_sentences(text, b_start, b_end):
            if s_end - s_start > _LONG:
                pieces = _cut(text, s_start, s_end, _SOFT_BREAK)
            else:
                pieces = [(s_start, s_end)]
            for p_start, p_end in pieces:
                span = _trim(text, p_start, p_end)
                if span is not None:
                    out.append(Sentence(span[0], span[1], text[span[0] : span[1]]))
    return out


def _cut(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        pieces.append((pos, m.start()))
        pos = m.end()
    pieces.append((pos, end))
    return pieces


def _split_sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    pos = start
    for m in _SENTENCE_END.finditer(text, start, end):
        word = re.search(r"([A-Za-z.]+)\.$", text[max(pos, m.start() - 12) : m.start() + 1])
        if word and word.group(1).lower().rstrip(".") in _ABBREVIATIONS:
            continue
        # "Section 1." or "(a)." style numbering: a single short token before the stop.
        before = text[pos : m.start()].strip()
        if len(before) <= 3:
            continue
        cut = m.start() + 1
        while cut < m.end() and not text[cut].isspace():
            cut += 1  # keep closing quotes and brackets with their sentence
        pieces.append((pos, cut))
        pos = m.end()
    pieces.append((pos, end))
    return pieces


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if not any(c.isalnum() for c in text[start:end]):
        return None
    return start, end


_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u00a0": " ",
    }
)


def normalize(text: str) -> str:
    """Lower case, plain quotes and dashes, hyphens and underscores as spaces, one space."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = re.sub(r"(?<=[a-z])-\s*\n\s*(?=[a-z])", "", text)  # words hyphenated across lines
    text = re.sub(r"[-_/]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def words(text: str) -> str:
    """`normalize`, then only letters, digits and single spaces ("$" and "%" kept)."""
    text = normalize(text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 700,000,000 -> 700000000
    text = re.sub(r"(?!(?<=\d)\.(?=\d))[^a-z0-9$%\u20ac\u00a3 ]", " ", text)  # keep 1.5
    return re.sub(r"\s+", " ", text).strip()
