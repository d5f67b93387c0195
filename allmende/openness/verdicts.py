"""Framework verdicts from evidence, each with reasons that cite it.

- `mof_class`: the Model Openness Framework class (I / II / III / none), with the Model Openness
  Tool's rules (cumulative classes; a component counts only if its licence is open; a research
  paper stands in for the technical report).
- `osaid`: the OSI Open Source AI Definition 1.0: open-source, open-weights or not-open.
- `index_profile`: the European Open Source AI Index's twelve parameters and score.
- `ai_act`: whether the EU AI Act's open-source exemption for GPAI models is likely to apply.

The operationalisation of each is documented in docs/openness.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from allmende.openness.evidence import Clause, Component, Evidence
from allmende.openness.licenses import RESTRICTIVE_KINDS, is_open_license
from allmende.openness.licenses.open_ids import is_open_id
from allmende.openness.sources.base import UNLICENSED, ModelEvidence, as_model_evidence

MofClass = Literal["I", "II", "III"]
Status = Literal["included", "unlicensed", "invalid", "missing"]

# Required components each class introduces (cumulative), and the optional ones (MOT settings).
REQUIRED: dict[MofClass, tuple[str, ...]] = {
    "III": (
        "Model architecture",
        "Model parameters (Final)",
        "Evaluation results",
        "Model card",
        "Data card",
        "Technical report",
    ),
    "II": ("Training code", "Inference code", "Evaluation code", "Evaluation data"),
    "I": (
        "Datasets",
        "Data preprocessing code",
        "Model parameters (Intermediate)",
        "Research paper",
    ),
}
OPTIONAL = {
    "III": ("Sample model outputs",),
    "II": ("Supporting libraries and tools",),
    "I": ("Model metadata",),
}
ORDER: tuple[MofClass, ...] = ("III", "II", "I")  # lowest class first
LABELS = {"I": "Open Science Model", "II": "Open Tooling Model", "III": "Open Model"}
TECH_REPORT, PAPER = "Technical report", "Research paper"
WEIGHTS = "Model parameters (Final)"


@dataclass
class MofVerdict:
    class_: MofClass | None
    missing: dict[str, list[str]] = field(default_factory=dict)  # class -> components lacking
    status: dict[str, Status] = field(default_factory=dict)
    licenses: dict[str, str | None] = field(default_factory=dict)
    progress: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def _component_license(ev: Evidence, comp: Component) -> str | None:
    """A component's own licence; without one, the model's licence (the MOT's fallback to the
    distribution licence). MOF records are already resolved at import."""
    if comp.license:
        return comp.license
    if comp.source is not None and comp.source.kind == "mof":
        return None
    if ev.license is not None:
        return ev.license.spdx or ev.license.name
    return None


def _is_open(license: str | None, strict: bool) -> bool:
    if not license or license == UNLICENSED:
        return False
    return is_open_id(license.strip()) if strict else is_open_license(license)


def restrictive(clauses: list[Clause]) -> list[Clause]:
    return [c for c in clauses if c.kind in RESTRICTIVE_KINDS]


def component_status(
    ev: Evidence, name: str, *, strict: bool = False, inherited: list[Clause] | None = None
) -> tuple[Status, str | None]:
    comp = ev.components.get(name)
    if comp is None:
        return "missing", None
    license = _component_license(ev, comp)
    if not license or license == UNLICENSED:
        return "unlicensed", None
    if name == WEIGHTS and inherited and restrictive(inherited):
        return "invalid", license  # a fine-tune's weights stay bound by the base's licence
    return ("included" if _is_open(license, strict) else "invalid"), license


def mof_class(
    evidence: Evidence, *, strict: bool = False, inherited: list[Clause] | None = None
) -> MofVerdict:
    """The MOF class, following the MOT's `ModelEvaluator` (see docs/openness.md).

    `strict` matches licence ids exactly as the tool does ("Apache 2.0" is then not open);
    by default spelling variants of an SPDX id count. `inherited` are clauses from the base
    models: if any is restrictive, the final parameters are judged by the base's licence.
    """
    v = MofVerdict(None)
    every = [c for cls in ORDER for c in (*REQUIRED[cls], *OPTIONAL[cls])]
    for name in every:
        v.status[name], v.licenses[name] = component_status(
            evidence, name, strict=strict, inherited=inherited
        )
    included = {n for n, s in v.status.items() if s == "included"}
    paper_listed = v.status[PAPER] != "missing"
    # The paper stands in for the technical report (classes III and II) when the report is
    # not included; in class I the report is then not required.
    substitute = v.status[TECH_REPORT] != "included" and paper_listed
    required: list[str] = []
    lower_met = True
    for cls in ORDER:
        required += REQUIRED[cls]
        if cls != "I":
            need = [PAPER if c == TECH_REPORT and substitute else c for c in required]
        elif substitute and PAPER in included:
            need = [c for c in required if c != TECH_REPORT]
        else:
            need = list(required)
        lacking = [c for c in need if c not in included]
        v.progress[cls] = round(100.0 * (len(need) - len(lacking)) / len(need), 1)
        if not lower_met:
            v.progress[cls] = 0.0
        if lacking:
            v.missing[cls] = lacking
            lower_met = False
        elif lower_met:
            v.class_ = cls
    v.missing = {c: m for c, m in v.missing.items() if v.class_ is None or _above(c, v.class_)}
    v.reasons = _mof_reasons(v, substitute)
    return v


def _above(cls: str, than: MofClass) -> bool:
    return [str(c) for c in ORDER].index(cls) > ORDER.index(than)


def _mof_reasons(v: MofVerdict, substitute: bool) -> list[str]:
    reasons: list[str] = []
    if v.class_ is not None:
        reasons.append(
            f"Class {v.class_} ({LABELS[v.class_]}): every required component of "
            f"class {v.class_} and below is released under an open licence."
        )
    else:
        reasons.append("No class: not every Class III component is released under an open licence.")
    if substitute:
        reasons.append("A research paper is listed, so it stands in for the technical report.")
    for cls, lacking in v.missing.items():
        parts = []
        for name in lacking:
            status = v.status.get(name, "missing")
            lic = v.licenses.get(name)
            parts.append(f"{name} ({status}{f': {lic}' if status == 'invalid' else ''})")
        reasons.append(f"For class {cls}: {'; '.join(parts)}.")
    return reasons


# --- OSI Open Source AI Definition 1.0 ---------------------------------------------------------

OsaidVerdict = Literal["open-source", "open-weights", "not-open", "unknown"]


def _open_component(ev: Evidence, name: str, clauses: list[Clause] | None = None) -> bool:
    return component_status(ev, name, inherited=clauses)[0] == "included"


def osaid(evidence: Evidence, clauses: list[Clause]) -> tuple[OsaidVerdict, list[str]]:
    """OSAID 1.0 as operationalised in docs/openness.md; `clauses` include inherited ones."""
    if not evidence.sources:
        return "unknown", ["No evidence about this model was found."]
    reasons: list[str] = []
    weights = evidence.components.get(WEIGHTS)
    blocking = restrictive(clauses)
    weights_status, weights_license = component_status(evidence, WEIGHTS)
    params_ok = weights_status == "included" and not blocking
    if weights is None:
        reasons.append("Parameters: no evidence that the weights are released.")
    elif weights_status != "included":
        reasons.append(
            f"Parameters: the weights' licence ({weights_license or 'none found'}) "
            "is not an OSI-approved or equivalent open licence."
        )
    elif blocking:
        kinds = ", ".join(sorted({c.kind for c in blocking}))
        reasons.append(
            f"Parameters: the licence terms restrict use ({kinds}), so the freedoms "
            "to use, study, modify and share are not granted."
        )
    else:
        reasons.append(f"Parameters: weights released under {weights_license}.")
    training = _open_component(evidence, "Training code")
    inference = _open_component(evidence, "Inference code") or _open_component(
        evidence, "Model architecture"
    )
    code_ok = training and inference
    reasons.append(
        "Code: training code and inference (or architecture) code are openly licensed."
        if code_ok
        else "Code: "
        + "; ".join(
            m
            for m, ok in (
                ("no openly licensed training code", training),
                ("no openly licensed inference or architecture code", inference),
            )
            if not ok
        )
        + "."
    )
    data_ok = any(c in evidence.components for c in ("Datasets", "Data card")) or bool(
        evidence.datasets
    )
    reasons.append(
        "Data information: the training data is released or documented (datasets or data card)."
        if data_ok
        else "Data information: no released datasets, dataset list or data card was found."
    )
    if params_ok and code_ok and data_ok:
        return "open-source", reasons
    if weights is not None:
        return "open-weights", reasons
    return "not-open", reasons


# --- European Open Source AI Index -------------------------------------------------------------

INDEX_PARAMETERS = (
    "datasources_basemodel",
    "datasources_endmodel",
    "weights_basemodel",
    "weights_endmodel",
    "trainingcode",
    "code",
    "hardware_architecture",
    "preprint",
    "paper",
    "modelcard",
    "datasheet",
    "licenses",
)
INDEX_VALUE = {"open": 1.0, "partial": 0.5, "closed": 0.0}
INDEX_ATTRIBUTION = (
    "European Open Source AI Index (osai-index.eu), CC-BY 4.0, doi:10.5281/zenodo.15386042"
)


@dataclass
class IndexProfile:
    score: int
    parameters: dict[str, str]
    basis: Literal["index", "derived"]
    reasons: dict[str, str]
    source: str | None = None


def _rate(ev: Evidence, name: str, clauses: list[Clause]) -> tuple[str, str]:
    status, lic = component_status(ev, name, inherited=clauses)
    if status == "included":
        return "open", f"{name} released under {lic}"
    if status == "missing":
        return "closed", f"no evidence of {name.lower()}"
    return "partial", f"{name} released, licence {lic or 'unknown'} is not open"


def index_profile(evidence: Evidence, clauses: list[Clause]) -> IndexProfile:
    """The Index's ratings when the catalog carries them; otherwise derived from evidence."""
    ev = as_model_evidence(evidence)
    if ev.index:
        params = {p: ev.index.get(p, "closed") for p in INDEX_PARAMETERS}
        src = ev.index_source.cite() if ev.index_source else None
        why = {p: f"rated by the Index ({ev.index_system})" for p in params}
        return IndexProfile(_score(params), params, "index", why, src)
    params, why = _derive(ev, clauses)
    return IndexProfile(_score(params), params, "derived", why)


def _score(params: dict[str, str]) -> int:
    return round(100 * sum(INDEX_VALUE.get(v, 0.0) for v in params.values()) / len(params))


def _derive(ev: ModelEvidence, clauses: list[Clause]) -> tuple[dict[str, str], dict[str, str]]:
    p: dict[str, str] = {}
    why: dict[str, str] = {}
    data, data_why = _rate(ev, "Datasets", clauses)
    if data == "closed" and ev.datasets:
        data, data_why = "partial", "training datasets are named but not released as a component"
    for key in ("datasources_basemodel", "datasources_endmodel"):
        p[key], why[key] = data, data_why
    weights, w_why = _rate(ev, WEIGHTS, [])
    if weights == "open" and (restrictive(clauses) or ev.gated):
        weights, w_why = "partial", "weights released, but gated or under restrictive terms"
    for key in ("weights_basemodel", "weights_endmodel"):
        p[key], why[key] = weights, w_why
    p["trainingcode"], why["trainingcode"] = _rate(ev, "Training code", clauses)
    has = ev.components.__contains__
    if has("Training code") and (has("Data preprocessing code") or has("Evaluation code")):
        p["code"], why["code"] = "open", "training and data or evaluation code are released"
    elif has("Training code") or has("Inference code"):
        p["code"], why["code"] = "partial", "some code is released"
    else:
        p["code"], why["code"] = "closed", "no released code found"
    arch = has("Model architecture") or bool(ev.architecture)
    p["hardware_architecture"] = "partial" if arch else "closed"
    why["hardware_architecture"] = (
        "the architecture is public; hardware documentation is not assessed from metadata"
        if arch
        else "no architecture information found"
    )
    p["preprint"] = "open" if has(PAPER) else "partial" if has(TECH_REPORT) else "closed"
    why["preprint"] = (
        "research paper"
        if has(PAPER)
        else "technical report"
        if has(TECH_REPORT)
        else "no paper or report found"
    )
    p["paper"], why["paper"] = "closed", "peer review cannot be established from metadata"
    p["modelcard"] = "open" if has("Model card") else "closed"
    why["modelcard"] = "model card found" if has("Model card") else "no model card found"
    p["datasheet"] = "open" if has("Data card") else "partial" if ev.datasets else "closed"
    why["datasheet"] = (
        "data card found"
        if has("Data card")
        else ("datasets listed only" if ev.datasets else "no data card found")
    )
    opens = [p["weights_endmodel"] == "open", p["trainingcode"] == "open", data == "open"]
    p["licenses"] = "open" if all(opens) else "partial" if any(opens) else "closed"
    why["licenses"] = f"{sum(opens)} of weights, training code and data openly licensed"
    return p, why


# --- EU AI Act open-source exemption (GPAI) ----------------------------------------------------

AiActVerdict = Literal["likely", "unlikely", "unknown"]
AI_ACT_DISCLAIMER = (
    "Information, not legal advice: whether the exemption applies depends on facts a report "
    "cannot see (monetisation, systemic-risk designation, the provider's own obligations)."
)
# Art. 51 presumes systemic risk above 1e25 training FLOP. With ~6 FLOP per parameter and token
# and today's 10-40T-token runs, models of 100B+ parameters may cross it.
LARGE_MODEL = 100_000_000_000
_NOT_FREE = {
    "non-commercial",
    "research-only",
    "use-policy",
    "user-threshold",
    "geographic",
    "revocable",
    "output-restriction",
}


def ai_act(evidence: Evidence, clauses: list[Clause]) -> tuple[AiActVerdict, list[str], str]:
    """Art. 53(2) / Recitals 102-104, operationalised conservatively (docs/openness.md)."""
    ev = as_model_evidence(evidence)
    reasons: list[str] = []
    lic = ev.license
    blocking = sorted({c.kind for c in clauses if c.kind in _NOT_FREE})
    weights = ev.components.get(WEIGHTS)
    if lic is None and weights is None:
        return "unknown", ["No licence and no released weights were found."], AI_ACT_DISCLAIMER
    verdict: AiActVerdict = "likely"
    if blocking:
        verdict = "unlikely"
        reasons.append(
            "The licence restricts access, use, modification or distribution "
            f"({', '.join(blocking)}), so it is not a free and open-source licence."
        )
    elif lic is None or not (lic.spdx and is_open_license(lic.spdx)):
        name = (lic.spdx or lic.name) if lic else None
        verdict = "unknown" if lic is None or name is None else "unlikely"
        reasons.append(
            f"The licence ({name or 'unknown'}) is not a recognised free and open-source licence."
        )
    else:
        reasons.append(
            f"The licence ({lic.spdx}) allows access, use, modification and distribution."
        )
    if weights is None:
        verdict = "unlikely" if verdict == "unlikely" else "unknown"
        reasons.append("No evidence that the weights are publicly available.")
    else:
        reasons.append("The weights are publicly available.")
    if "Model architecture" in ev.components or ev.architecture:
        reasons.append("Information on the model architecture is public.")
    else:
        verdict = verdict if verdict == "unlikely" else "unknown"
        reasons.append("No public information on the model architecture was found.")
    if "Model card" not in ev.components:
        reasons.append("No model card was found (information on model usage must be public).")
        verdict = verdict if verdict == "unlikely" else "unknown"
    if ev.parameters is None:
        reasons.append(
            "The model's size is unknown: a model with systemic risk (over 10^25 "
            "training FLOP) is not exempt."
        )
    elif ev.parameters >= LARGE_MODEL:
        verdict = verdict if verdict == "unlikely" else "unknown"
        reasons.append(
            f"With {ev.parameters:,} parameters the training compute may exceed "
            "10^25 FLOP (systemic risk), which rules the exemption out."
        )
    else:
        reasons.append(
            f"With {ev.parameters:,} parameters it is far from the 10^25 FLOP "
            "systemic-risk presumption."
        )
    reasons.append(
        "Not checked: whether the model is monetised (Recital 103). The exemption "
        "never covers the copyright policy or the training-content summary (Art. "
        "53(1)(c), (d))."
    )
    return verdict, reasons, AI_ACT_DISCLAIMER
