"""Download models named by a Hugging Face Hub id: ``owner/name`` or ``owner/name:SELECTOR``.

A repo with GGUF files gives one file (the selector names a quantisation such as ``Q4_1``, or an
exact filename); a transformers / sentence-transformers repo gives a snapshot directory holding
only what an embedding runtime reads. The local Hugging Face cache is tried first, so a cached
model starts without any request; ``allow_download=False`` or ``HF_HUB_OFFLINE=1`` stop there.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from fnmatch import fnmatch
from pathlib import Path

# No telemetry call to huggingface.co from a self-hosted server (set before the import).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import ConfigError

logger = logging.getLogger("allmende.models")

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
HUB_ID_RE = re.compile(
    rf"^(?P<repo>{_NAME}/{_NAME})(?::(?P<selector>[A-Za-z0-9._+-][A-Za-z0-9._+/-]*))?$"
)
_PREFERRED_QUANTS = ("Q4_K_M", "Q4_1", "Q4_0", "Q8_0")
_SHARD_RE = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
# What the embedding runtime reads from a transformers / sentence-transformers repo.
EMBEDDING_PATTERNS = ["*.json", "*.safetensors", "*.txt", "tokenizer*", "1_Pooling/*"]
EMBEDDING_IGNORE = ["*.bin", "*.onnx", "*.h5", "*.msgpack", "*.ot"]


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection errors of whichever HTTP client huggingface_hub uses (requests' are OSErrors)."""
    found: list[type[Exception]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_NETWORK_ERRORS: tuple[type[Exception], ...] = (HFValidationError, *_transport_errors())


def is_hub_id(text: str) -> bool:
    """Whether `text` has the syntax of a Hub id (the caller checks local paths first)."""
    match = HUB_ID_RE.match(text)
    return match is not None and not re.search(r"--|\.\.", match["repo"])


def _offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or constants.is_offline_mode()


def _matches_tag(tag: str, path: str) -> bool:
    pattern = rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9_])"
    return re.search(pattern, path, re.IGNORECASE) is not None


def choose_gguf(repo_id: str, ggufs: list[str], selector: str | None) -> str:
    """The one GGUF file of `ggufs` that `selector` (or the default preference) names."""
    available = ", ".join(sorted(ggufs))
    shard_error = ConfigError(
        f"{repo_id}: split GGUF files (-00001-of-0000N) are not supported yet; "
        f"pick a single-file quantisation. Available GGUF files: {available}"
    )
    if selector is None:
        singles = [
            f for f in ggufs if not _SHARD_RE.search(f) and not Path(f).name.startswith("mmproj")
        ]
        for tag in _PREFERRED_QUANTS:
            hits = [f for f in singles if _matches_tag(tag, f)]
            if hits:
                return min(hits)
        if singles:
            return min(singles)
        raise shard_error
    wanted = selector.lower()
    hits = [f for f in ggufs if wanted in (f.lower(), Path(f).name.lower())]
    hits = hits or [f for f in ggufs if _matches_tag(selector, f)]
    if any(_SHARD_RE.search(f) for f in hits):
        raise shard_error
    if len(hits) == 1:
        return hits[0]
    how = "several" if hits else "no"
    raise ConfigError(
        f"The selector '{selector}' matches {how} GGUF files in {repo_id}. "
        f"Available GGUF files: {available}"
    )


def _from_cache(
    repo_id: str, selector: str | None, revision: str | None, cache_dir: Path | None
) -> Path | None:
    """The model from the local cache, without any network request; None if it is not there."""
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=True,
                allow_patterns=EMBEDDING_PATTERNS,
                ignore_patterns=EMBEDDING_IGNORE,
            )
        )
        complete = True
    except LocalEntryNotFoundError as err:
        # IncompleteSnapshotError (recent huggingface_hub) still names the snapshot folder.
        partial: str | None = getattr(err, "snapshot_path", None)
        if partial is None:
            return None
        folder, complete = Path(partial), False
    ggufs = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf") if p.is_file())
    if ggufs:
        try:
            return folder / choose_gguf(repo_id, ggufs, selector)
        except ConfigError:
            return None  # the wanted file is not cached (or ambiguous): ask the Hub
    if selector is None and complete and (folder / "config.json").is_file():
        return folder
    return None


def _describe(err: Exception, repo_id: str, revision: str | None, endpoint: str) -> str:
    repo = f"the Hugging Face repo '{repo_id}' at {endpoint}"
    where = repo[0].upper() + repo[1:]
    if isinstance(err, GatedRepoError):
        return f"{where} is gated: accept its terms on the Hub, then set HF_TOKEN."
    if isinstance(err, RepositoryNotFoundError):
        return f"{where} was not found (if it is private, set HF_TOKEN)."
    if isinstance(err, RevisionNotFoundError):
        return f"{where} has no revision '{revision}'."
    if isinstance(err, RemoteEntryNotFoundError):
        return f"A file of {repo} could not be found: {err}"
    if isinstance(err, HfHubHTTPError):
        return f"{where} answered HTTP {err.response.status_code}."
    if isinstance(err, HFValidationError):
        return f"'{repo_id}' is not a valid Hugging Face repo id: {err}"
    return f"Could not download {repo}: {type(err).__name__}: {err}"


def download(
    repo_id_with_selector: str,
    *,
    allow_download: bool = True,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    revision: str | None = None,
) -> Path:
    """The local path of the Hub model: a GGUF file, or a snapshot directory for embeddings."""
    match = HUB_ID_RE.match(repo_id_with_selector.strip())
    if match is None:
        raise ConfigError(
            f"'{repo_id_with_selector}' is not a Hugging Face id (owner/name[:QUANT])."
        )
    repo_id, selector = match["repo"], match["selector"]
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")

    cached = _from_cache(repo_id, selector, revision, cache_dir)
    if cached is not None:
        return cached
    if not allow_download or _offline():
        raise ConfigError(
            f"{repo_id_with_selector} is not in the local Hugging Face cache and downloads are off "
            "(enable hub_download and unset HF_HUB_OFFLINE to fetch it from the Hub)."
        )
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision)
        files = sorted(s.rfilename for s in info.siblings or [])
        ggufs = [f for f in files if f.lower().endswith(".gguf")]
        if ggufs:
            filename = choose_gguf(repo_id, ggufs, selector)
            logger.info("Downloading %s/%s from %s", repo_id, filename, endpoint)
            local = hf_hub_download(
                repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint
            )
            return Path(local)
        if selector is not None:
            raise ConfigError(f"{repo_id} has no GGUF files, so ':{selector}' selects nothing.")
        if "config.json" not in files:
            raise ConfigError(
                f"{repo_id} holds neither GGUF files nor a transformers model (config.json); "
                f"its files: {', '.join(files) or 'none'}"
            )
        wanted = [
            f
            for f in files
            if any(fnmatch(f, p) for p in EMBEDDING_PATTERNS)
            and not any(fnmatch(f, p) for p in EMBEDDING_IGNORE)
        ]
        logger.info("Downloading %s/{%s} from %s", repo_id, ", ".join(wanted), endpoint)
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            allow_patterns=EMBEDDING_PATTERNS,
            ignore_patterns=EMBEDDING_IGNORE,
        )
        return Path(folder)
    except _NETWORK_ERRORS as err:
        raise ConfigError(_describe(err, repo_id, revision, endpoint)) from err
