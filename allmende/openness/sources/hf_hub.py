"""Evidence from the Hugging Face Hub's model metadata (only when network use is allowed).

`HubSource` calls ``HfApi.model_info(repo_id, expand=[...])`` and reads the card data (the model
card's front matter: ``license``, ``license_name``, ``license_link``, ``base_model``, ``datasets``),
``gated``, the file list (weights, licence files) and the safetensors parameter count. Tests
inject a fake `api` that returns a recorded response, so no test touches the network.
"""

from __future__ import annotations

from typing import Any, Protocol

from allmende.openness.evidence import Component, Source
from allmende.openness.sources.base import ModelEvidence, clauses_for, license_from_id

EXPAND = ["author", "cardData", "gated", "safetensors", "siblings", "tags", "config"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


class ModelInfoAPI(Protocol):
    def model_info(self, repo_id: str, *, expand: Any = None) -> Any: ...


def _card(info: Any) -> dict[str, Any]:
    card = getattr(info, "card_data", None)
    if card is None:
        return {}
    if isinstance(card, dict):
        return card
    to_dict = getattr(card, "to_dict", None)
    return to_dict() if callable(to_dict) else {}


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() or None if isinstance(value, str) else None


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class HubSource:
    kind = "hf-hub"

    def __init__(self, api: ModelInfoAPI | None = None) -> None:
        self._api = api

    @property
    def api(self) -> ModelInfoAPI:
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi()
        return self._api

    def collect(self, target: str) -> ModelEvidence | None:
        from allmende.models.hub import is_hub_id  # imports huggingface_hub: only when used

        if not is_hub_id(target):
            return None
        repo_id = target.split(":", 1)[0]
        try:
            info = self.api.model_info(repo_id, expand=EXPAND)
        except Exception as exc:  # offline, gated, not found: the report says so
            ev = ModelEvidence(model=repo_id)
            ev.notes.append(f"Hugging Face Hub metadata unavailable: {type(exc).__name__}")
            return ev
        return hub_evidence(repo_id, info)


def hub_evidence(repo_id: str, info: Any) -> ModelEvidence:
    url = f"https://huggingface.co/{repo_id}"
    card = _card(info)
    ev = ModelEvidence(model=repo_id, name=repo_id, sources=[Source("hf-hub", url)])
    ev.producer = getattr(info, "author", None) or repo_id.split("/")[0]
    link = _first(card.get("license_link"))
    if link and not link.startswith(("http://", "https://")):
        link = f"{url}/blob/main/{link.lstrip('./')}"
    tags = _list(getattr(info, "tags", None))
    license_id = _first(card.get("license")) or next(
        (t.split(":", 1)[1] for t in tags if t.startswith("license:")), None
    )
    ev.license = license_from_id(
        license_id,
        name=_first(card.get("license_name")),
        url=link,
        source=Source("hf-hub", url, "cardData.license"),
    )
    ev.clauses = clauses_for(ev.license)
    ev.base_models = _list(card.get("base_model")) or [
        t.split(":", 1)[1] for t in tags if t.startswith("base_model:") and t.count(":") == 1
    ]
    ev.datasets = _list(card.get("datasets"))
    gated = getattr(info, "gated", None)
    ev.gated = bool(gated) if gated is not None else None
    if ev.gated:
        ev.notes.append(f"Downloads are gated on the Hub ({gated}).")
    files = [getattr(s, "rfilename", "") for s in getattr(info, "siblings", None) or []]
    lic = ev.license.spdx or ev.license.name if ev.license else None
    weights = [f for f in files if f.endswith(WEIGHT_SUFFIXES)]
    if weights:
        ev.components["Model parameters (Final)"] = Component(
            "Model parameters (Final)", lic, url, Source("hf-hub", url, f"siblings:{weights[0]}")
        )
    if "README.md" in files:
        ev.components["Model card"] = Component(
            "Model card", lic, f"{url}/blob/main/README.md", Source("hf-hub", url, "README.md")
        )
    safetensors = getattr(info, "safetensors", None)
    total = getattr(safetensors, "total", None)
    ev.parameters = total if isinstance(total, int) else None
    config = getattr(info, "config", None)
    if isinstance(config, dict):
        archs = _list(config.get("architectures"))
        ev.architecture = archs[0] if archs else _first(config.get("model_type"))
    return ev
