"""Human names for licence ids, SPDX expressions and licence texts."""

from __future__ import annotations

from allmende.openness.licenses.identify import identify_text
from allmende.openness.licenses.known import catalog, known_license
from allmende.openness.licenses.spdx import normalize_spdx


def license_name(id_or_text: str) -> str | None:
    """A human name: "llama3.1" -> "Llama 3.1 Community License Agreement", "mit" -> "MIT
    License". An SPDX expression is named by its canonical spelling; a licence text (several
    lines, or long) by `identify_text`. None when nothing is known.
    """
    value = (id_or_text or "").strip()
    if not value:
        return None
    if "\n" in value or len(value) > 200:
        return identify_text(value)[1]
    known = known_license(value)
    if known is not None:
        return known.name
    spdx = normalize_spdx(value)
    if spdx is None:
        return None
    return catalog().spdx_names.get(spdx, spdx)
