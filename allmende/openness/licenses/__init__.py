"""Licence analysis: SPDX ids and expressions, known licences, and restriction clauses.

- `normalize_spdx`, `is_open_license`: SPDX spelling and the MOT's notion of an open licence.
- `license_name`, `known_license`, `known_clauses`: names and known facts (`known.yaml`).
- `identify_text`, `detect_clauses`, `analyse`: any licence text, including unseen ones.

The clause vocabulary is documented in `clauses.py`; `RESTRICTIVE_KINDS` is every kind except
``share-alike`` (copyleft keeps derivatives open, so it does not count against openness).
"""

from __future__ import annotations

from allmende.openness.licenses.analysis import (
    LicenseAnalysis,
    analyse,
    analysis_to_json,
    clause_to_json,
)
from allmende.openness.licenses.clauses import RESTRICTIVE_KINDS, detect_clauses
from allmende.openness.licenses.identify import identify_text
from allmende.openness.licenses.known import (
    KnownClause,
    KnownLicense,
    known_clauses,
    known_license,
)
from allmende.openness.licenses.naming import license_name
from allmende.openness.licenses.spdx import is_open_license, normalize_spdx

__all__ = [
    "RESTRICTIVE_KINDS",
    "KnownClause",
    "KnownLicense",
    "LicenseAnalysis",
    "analyse",
    "analysis_to_json",
    "clause_to_json",
    "detect_clauses",
    "identify_text",
    "is_open_license",
    "known_clauses",
    "known_license",
    "license_name",
    "normalize_spdx",
]
