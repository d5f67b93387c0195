"""SPDX ids and expressions: canonical spelling, and whether a licence counts as open.

Parsing and canonical case come from license-expression (nexB/aboutcode) and its SPDX
licensing (`get_spdx_licensing()`), which knows the SPDX License List plus ScanCode's
`LicenseRef-scancode-*` keys. Before the library sees an expression, each licence in it is
mapped from a common human spelling ("Apache License, Version 2.0", "mit license", "GPLv3")
to its SPDX id. Hugging Face ids that SPDX does not list ("llama3.1", "gemma", "openrail",
"other") give None here; `license_name` names them.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import license_expression  # type: ignore[import-untyped]

from allmende.openness.licenses.open_ids import is_open_id

# SPDX ids that license-expression 30.4's data does not have yet (OpenMDW-1.0 joined the SPDX
# list in 2025 [unverified here]; the MOT counts it as open).
_EXTRA_IDS = {"openmdw-1.0": "OpenMDW-1.0"}

# Common spellings (after `_alias_key`) that are not SPDX ids themselves.
_ALIASES = {
    "apache": "Apache-2.0",
    "apache2": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "asl-2.0": "Apache-2.0",
    "mit-x11": "MIT",
    "expat": "MIT",
    "new-bsd": "BSD-3-Clause",
    "bsd-new": "BSD-3-Clause",
    "modified-bsd": "BSD-3-Clause",
    "bsd-3": "BSD-3-Clause",
    "3-clause-bsd": "BSD-3-Clause",
    "bsd-3-clause-new-or-revised": "BSD-3-Clause",
    "simplified-bsd": "BSD-2-Clause",
    "freebsd": "BSD-2-Clause",
    "bsd-2": "BSD-2-Clause",
    "2-clause-bsd": "BSD-2-Clause",
    "gplv2": "GPL-2.0-only",
    "gpl-2": "GPL-2.0-only",
    "gnu-gpl-2": "GPL-2.0-only",
    "gnu-general-public-2.0": "GPL-2.0-only",
    "gplv3": "GPL-3.0-only",
    "gpl-3": "GPL-3.0-only",
    "gnu-gpl-3": "GPL-3.0-only",
    "gnu-general-public-3.0": "GPL-3.0-only",
    "lgplv2.1": "LGPL-2.1-only",
    "lgplv3": "LGPL-3.0-only",
    "agplv3": "AGPL-3.0-only",
    "gnu-affero-general-public-3.0": "AGPL-3.0-only",
    "mpl-2": "MPL-2.0",
    "mozilla-public-2.0": "MPL-2.0",
    "boost": "BSL-1.0",
    "boost-software-1.0": "BSL-1.0",
    "cc0": "CC0-1.0",
    "cc-zero": "CC0-1.0",
    "creative-commons-zero": "CC0-1.0",
    "cc-by": "CC-BY-4.0",
    "cc-by-sa": "CC-BY-SA-4.0",
    "cc-by-nc": "CC-BY-NC-4.0",
    "creative-commons-attribution-4.0": "CC-BY-4.0",
    "creative-commons-attribution-4.0-international": "CC-BY-4.0",
    "creative-commons-attribution-sharealike-4.0": "CC-BY-SA-4.0",
    "creative-commons-attribution-noncommercial-4.0": "CC-BY-NC-4.0",
    "odc-by": "ODC-By-1.0",
    "odc-pddl-1.0": "PDDL-1.0",
    "odc-pddl": "PDDL-1.0",
    "pddl": "PDDL-1.0",
    "odbl": "ODbL-1.0",
    "c-uda": "C-UDA-1.0",
    "openmdw": "OpenMDW-1.0",
    "unlicensed": "Unlicense",
}
_LICENSE_REF = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+$")
_TOKENS = re.compile(
    r"\s*(\(|\)|\b(?:and|or|with)\b(?=\s|\()|[^()]+?(?=\s+(?:and|or|with)\b|[()]|$))\s*", re.I
)


@cache
def licensing() -> Any:
    """license-expression's SPDX `Licensing` (loads its index once)."""
    return license_expression.get_spdx_licensing()


def _alias_key(atom: str) -> str:
    key = atom.strip().strip("\"'").lower().replace("licence", "license")
    key = re.sub(r"\b(?:the|license|version|public-license)\b|[,;]", " ", key)
    key = re.sub(r"\bv(?=\d)|\bno\.\s*", "", key)
    key = re.sub(r"[\s_-]+", "-", key).strip("-")
    return key


def _canonical_atom(atom: str) -> str | None:
    atom = atom.strip()
    if _LICENSE_REF.match(atom):
        return atom
    for candidate in (atom, _alias_key(atom)):
        if candidate.lower() in _EXTRA_IDS:
            return _EXTRA_IDS[candidate.lower()]
        if candidate in _ALIASES:
            return _ALIASES[candidate]
        symbol = _parse(candidate)
        if symbol is not None and not licensing().unknown_license_keys(symbol):
            return str(symbol.render())
    return None


def _parse(expression: str) -> Any:
    if not expression or not re.fullmatch(r"[A-Za-z0-9.+:()\s-]+", expression):
        return None
    try:
        return licensing().parse(expression, validate=False)
    except Exception:  # the library raises several unrelated types on malformed input
        return None


def normalize_spdx(text: str) -> str | None:
    """The canonical SPDX spelling of an id or expression, or None if it is not SPDX.

    >>> normalize_spdx("apache-2.0 AND (mit)")
    'Apache-2.0 AND MIT'
    """
    return _normalize(text, keep_unknown=False)


def _normalize(text: str, keep_unknown: bool) -> str | None:
    text = (text or "").strip()
    if not text or len(text) > 500:
        return None
    parts: list[str] = []
    pos = 0
    for m in _TOKENS.finditer(text):
        if m.start() != pos:
            return None
        pos = m.end()
        token = m.group(1).strip()
        if token in ("(", ")"):
            parts.append(token)
        elif token.lower() in ("and", "or", "with"):
            parts.append(token.upper())
        else:
            atom = _canonical_atom(token)
            if atom is None and keep_unknown:
                atom = re.sub(r"[^A-Za-z0-9.+-]+", "-", token).strip("-") or None
            if atom is None:
                return None
            parts.append(atom)
    if pos != len(text):
        return None
    joined = " ".join(parts)
    if len(parts) == 1:
        return joined
    expression = _parse(joined.replace("( ", "(").replace(" )", ")"))
    if expression is None:
        return None
    unknown = [k for k in licensing().unknown_license_keys(expression) if not _is_extra(k)]
    return None if unknown and not keep_unknown else str(expression.render())


def _is_extra(key: str) -> bool:
    return key in _EXTRA_IDS.values() or bool(_LICENSE_REF.match(key))


def is_open_license(spdx: str | None) -> bool:
    """Open the way the MOT means it: OSI-approved, FSF-libre, an open-data licence or OpenMDW.

    For an expression, `A OR B` is open if either side is, `A AND B` only if both are, and
    `A WITH exception` if `A` is (an SPDX exception only adds permissions).
    """
    if not spdx:
        return False
    canonical = _normalize(spdx, keep_unknown=True)  # "MIT OR llama3" is open: MIT suffices
    if canonical is None:
        return False
    expression = _parse(canonical)
    return expression is not None and _open(expression)


def _open(node: Any) -> bool:
    lic = licensing()
    if isinstance(node, lic.AND):
        return all(_open(arg) for arg in node.args)
    if isinstance(node, lic.OR):
        return any(_open(arg) for arg in node.args)
    if isinstance(node, license_expression.LicenseWithExceptionSymbol):
        return _open(node.license_symbol)
    return is_open_id(str(node.key))
