"""Which licence a full text is: by its title, else by identifying phrases.

1. Titles. The known model licences' titles ("llama 3.1 community license agreement", "gemma
   terms of use", ...) and the common licences' titles (`known.yaml`) are looked up in the
   normalised text; the earliest match wins (the longest on a tie). A title near the top gives
   confidence 0.95, one further down 0.75 (the text may only mention the licence).
2. Fingerprints. Texts without a title (an MIT file that starts with its copyright line) are
   matched on the share of a licence's identifying phrases they contain, discounted when the
   text is much longer than the licence.
3. Sanity. A text identified as an open licence in which `detect_clauses` finds a restrictive
   clause is not that licence ("Modified MIT" licences with user caps): its spdx is None and
   its name "Modified <name>".
"""

from __future__ import annotations

from allmende.openness.evidence import Source
from allmende.openness.licenses.clauses import RESTRICTIVE_KINDS, detect_clauses
from allmende.openness.licenses.known import catalog
from allmende.openness.licenses.open_ids import is_open_id
from allmende.openness.licenses.text import words

_TOP = 600  # characters of normalised text that count as "the top"


def _spdx_name(spdx: str) -> str:
    return catalog().spdx_names.get(spdx, spdx)


def _by_title(w: str) -> tuple[str | None, str | None, float] | None:
    best: tuple[int, int, str | None, str] | None = None  # (position, -length, spdx, name)
    candidates: list[tuple[str, str | None, str]] = []
    for lic in catalog().models:
        candidates += [(title, lic.spdx, lic.name) for title in lic.titles]
    for spdx_id, titles in catalog().titles.items():
        candidates += [(title, spdx_id, _spdx_name(spdx_id)) for title in titles]
    for title, spdx, name in candidates:
        phrase = f" {words(title)} "
        pos = w.find(phrase)
        if pos < 0 or w[max(0, pos - 9) : pos].endswith(" modified"):
            continue
        key = (pos, -len(phrase), spdx, name)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None:
        return None
    return best[2], best[3], 0.95 if best[0] < _TOP else 0.75


def _by_fingerprint(w: str) -> tuple[str | None, str | None, float] | None:
    n_words = w.count(" ") - 1
    best: tuple[float, int, str] | None = None
    for spdx, (length, phrases) in catalog().fingerprints.items():
        hits = sum(f" {words(p)} " in w for p in phrases)
        share = hits / len(phrases)
        if share < 2 / 3:
            continue
        excess = max(0.0, n_words / length - 1.3)  # copyright lines and headers are fine
        if excess > 0.7:
            continue
        score = share * (1.0 - excess / 0.7 * 0.5)
        if best is None or (score, len(phrases)) > best[:2]:
            best = (score, len(phrases), spdx)
    if best is None:
        return None
    return best[2], _spdx_name(best[2]), round(0.5 + 0.4 * best[0], 2)


def identify_text(text: str) -> tuple[str | None, str | None, float]:
    """(spdx, name, confidence) for a licence text; (None, None, 0.0) if it is not recognised."""
    w = f" {words(text)} "
    found = _by_title(w) or _by_fingerprint(w)
    if found is None:
        return None, None, 0.0
    spdx, name, confidence = found
    if spdx is not None and is_open_id(spdx):
        clauses = detect_clauses(text, Source("license-text", "identify"))
        if any(c.kind in RESTRICTIVE_KINDS for c in clauses):
            return None, f"Modified {name}", 0.5
    return spdx, name, confidence
