"""An organisation's openness policy: which models a server may serve, judged on their reports.

Every rule is optional; a model listed in `allow_models` is exempt from all of them. `check`
returns one line per violated rule, naming the rule and why, or an empty list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from allmende.openness.evidence import ClauseKind

MOF_RANK = {"I": 3, "II": 2, "III": 1, None: 0}


class OpennessPolicy(BaseModel):
    """Openness rules for serving (the `openness_policy` settings block)."""

    model_config = ConfigDict(extra="forbid")

    min_mof_class: Literal["I", "II", "III"] | None = Field(
        None, description="Lowest Model Openness Framework class a model may have (III < II < I)."
    )
    osaid: list[Literal["open-source", "open-weights", "not-open", "unknown"]] | None = Field(
        None, description="OSI Open Source AI Definition verdicts that are allowed."
    )
    forbid_clauses: list[ClauseKind] = Field(
        default_factory=list,
        description="Licence clause kinds (own or inherited) that rule a model out.",
    )
    require_license_known: bool = Field(
        False, description="Refuse models whose licence could not be determined."
    )
    allow_models: list[str] = Field(
        default_factory=list,
        description="Model ids (served id, report model or catalog id) exempt from the policy.",
    )


def check(policy: OpennessPolicy, report: dict[str, Any], model_id: str | None = None) -> list[str]:
    """The rules `report` violates, each as "rule: reason"; [] if the model may be served."""
    names = {model_id, report.get("model"), report.get("catalog")} - {None}
    if names & set(policy.allow_models):
        return []
    violations: list[str] = []
    mof = report.get("mof", {}).get("class")
    if policy.min_mof_class and MOF_RANK.get(mof, 0) < MOF_RANK[policy.min_mof_class]:
        violations.append(
            f"min_mof_class: the model's MOF class is {mof or 'none'}, the policy requires "
            f"class {policy.min_mof_class} or higher"
        )
    verdict = report.get("osaid", {}).get("verdict")
    if policy.osaid is not None and verdict not in policy.osaid:
        violations.append(
            f"osaid: the model's OSAID verdict is {verdict}, the policy allows "
            f"{', '.join(policy.osaid) or 'none'}"
        )
    for kind in policy.forbid_clauses:
        hits = [c for c in report.get("clauses", []) if c.get("kind") == kind]
        if hits:
            where = hits[0].get("inherited_from")
            origin = f" (inherited from {where})" if where else ""
            violations.append(
                f"forbid_clauses: the licence has a {kind} clause{origin}, cited at "
                f"{hits[0].get('source')}"
            )
    lic = report.get("license") or {}
    if policy.require_license_known and not (lic.get("spdx") or lic.get("name")):
        violations.append("require_license_known: no licence was found for the model")
    return violations
