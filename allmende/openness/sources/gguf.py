"""Evidence from a GGUF file's metadata, read from its header without touching the weights.

GGUF (ggml `docs/gguf.md`) starts with a magic, a version, the tensor and key-value counts, then
the key-value section. Only that section is read here, by a small reader of our own: ggml's
`gguf` package parses the whole file, including every tokenizer entry, which takes far longer
than reading the header. Arrays of keys we do not need (the tokenizer's vocabulary) are skipped.
`write_metadata` writes a metadata-only GGUF (no tensors), for tests and fixtures.
"""

from __future__ import annotations

import functools
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from allmende.openness.evidence import Component, Source
from allmende.openness.sources.base import (
    ModelEvidence,
    clauses_for,
    license_from_id,
    parse_size,
)

MAGIC = b"GGUF"

# GGUF value types: id -> struct format (scalars); 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_WANTED_PREFIXES = ("general.",)
_MAX_STRING = 1 << 24
_U64 = struct.Struct("<Q")


class GGUFError(ValueError):
    """The file is not a readable GGUF file."""


class _Reader:
    """Reads GGUF values from a buffer at a moving offset."""

    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)

    def unpack(self, fmt: str) -> Any:
        fmt = "<" + fmt
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise GGUFError("truncated GGUF header")
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.unpack("Q")
        if n > _MAX_STRING or self.pos + n > self.size:
            raise GGUFError("implausible string length in GGUF header")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            if keep:
                return self.string()
            n = self.unpack("Q")
            self.pos += n
            return None
        if vtype == _ARRAY:
            etype = self.unpack("I")
            count = self.unpack("Q")
            if not keep:
                self._skip_array(etype, count)
                return None
            if count > _MAX_STRING:
                raise GGUFError("implausible array length in GGUF header")
            return [self.value(etype, True) for _ in range(count)]
        raise GGUFError(f"unknown GGUF value type {vtype}")

    def _skip_array(self, etype: int, count: int) -> None:
        if etype in _SCALARS:
            self.pos += struct.calcsize("<" + _SCALARS[etype]) * count
        elif etype == _STRING:
            unpack, buf, pos = _U64.unpack_from, self.buf, self.pos
            for _ in range(count):
                pos += 8 + unpack(buf, pos)[0]
            self.pos = pos
        else:
            for _ in range(count):
                self.value(etype, False)
        if self.pos > self.size:
            raise GGUFError("truncated GGUF header")


def read_metadata(path: str | Path, prefixes: tuple[str, ...] = _WANTED_PREFIXES) -> dict[str, Any]:
    """The key-value metadata of a GGUF file whose keys start with one of `prefixes`."""
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                return _parse(_Reader(mm), prefixes)
            except struct.error as exc:
                raise GGUFError(f"{path}: truncated GGUF header") from exc


def _parse(r: _Reader, prefixes: tuple[str, ...]) -> dict[str, Any]:
    r.pos = 4
    version = r.unpack("I")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    r.unpack("Q")  # tensor count
    n_kv = r.unpack("Q")
    out: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        vtype = r.unpack("I")
        keep = key.startswith(prefixes)
        value = r.value(vtype, keep)
        if keep:
            out[key] = value
    return out


def _encode(value: Any) -> Iterator[bytes]:
    """(type, payload) bytes for a metadata value: str, bool, int, float or a list of one."""
    if isinstance(value, bool):
        yield struct.pack("<I?", 7, value)
    elif isinstance(value, int):
        yield struct.pack("<Iq", 11, value)
    elif isinstance(value, float):
        yield struct.pack("<Id", 12, value)
    elif isinstance(value, str):
        raw = value.encode()
        yield struct.pack("<IQ", _STRING, len(raw)) + raw
    elif isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise TypeError("only string arrays are supported")
        yield struct.pack("<IIQ", _ARRAY, _STRING, len(value))
        for v in value:
            raw = v.encode()
            yield struct.pack("<Q", len(raw)) + raw
    else:
        raise TypeError(f"unsupported GGUF metadata value {value!r}")


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write a GGUF v3 file holding only `metadata` (no tensors)."""
    chunks = [MAGIC, struct.pack("<IQQ", 3, 0, len(metadata))]
    for key, value in metadata.items():
        raw = key.encode()
        chunks.append(struct.pack("<Q", len(raw)) + raw)
        chunks.extend(_encode(value))
    target = Path(path)
    target.write_bytes(b"".join(chunks))
    return target


def _text(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return (value.strip() or None) if isinstance(value, str) else None


def base_models(meta: dict[str, Any]) -> list[list[str]]:
    """For each parent (`general.base_model.N.*`), the names the file gives it: repo URL, name."""
    out: list[list[str]] = []
    count = meta.get("general.base_model.count")
    n = count if isinstance(count, int) and 0 <= count < 256 else 256
    for i in range(n):
        names = [
            v
            for f in ("repo_url", "name", "organization")
            if (v := _text(meta, f"general.base_model.{i}.{f}")) is not None
        ][:2]
        if not names:
            if count is None:
                break
            continue
        out.append(names)
    return out


@functools.lru_cache(maxsize=64)
def _cached_metadata(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    return read_metadata(path)


def metadata(path: Path) -> dict[str, Any]:
    """`read_metadata`, cached per file version (path, size, modification time)."""
    st = path.stat()
    return _cached_metadata(str(path.resolve()), st.st_size, st.st_mtime_ns)


class GGUFSource:
    """Evidence from GGUF metadata: licence, name, base models, datasets, source repository."""

    kind = "gguf"

    def collect(self, target: str) -> ModelEvidence | None:
        path = Path(target)
        if not path.is_file() or path.suffix.lower() != ".gguf":
            return None
        return gguf_evidence(path, metadata(path))


def gguf_evidence(path: Path, meta: dict[str, Any]) -> ModelEvidence:
    ref = str(path)
    ev = ModelEvidence(model=path.name, sources=[Source("gguf", ref)])
    ev.name = _text(meta, "general.name") or _text(meta, "general.basename")
    ev.producer = _text(meta, "general.organization") or _text(meta, "general.author")
    lic_id = _text(meta, "general.license")
    detail = "general.license" if lic_id else "general.license.name"
    ev.license = license_from_id(
        lic_id,
        name=_text(meta, "general.license.name"),
        url=_text(meta, "general.license.link"),
        source=Source("gguf", ref, detail),
    )
    ev.clauses = clauses_for(ev.license)
    # Parents: the first name of each is the lineage entry; all are kept for matching.
    parents = base_models(meta)
    ev.base_models = [names[0] for names in parents]
    ev.metadata["base_model_names"] = parents
    datasets = meta.get("general.datasets")
    if isinstance(datasets, list):
        ev.datasets = [d for d in datasets if isinstance(d, str) and d]
    lic = ev.license.spdx or ev.license.name if ev.license else None
    ev.components["Model parameters (Final)"] = Component(
        "Model parameters (Final)", lic, ref, Source("gguf", ref, "tensors")
    )
    ev.architecture = _text(meta, "general.architecture")
    ev.parameters = parse_size(_text(meta, "general.size_label"))
    for key in (
        "general.basename",
        "general.finetune",
        "general.size_label",
        "general.source.repo_url",
        "general.source.url",
        "general.source.huggingface.repository",
        "general.repo_url",
        "general.url",
    ):
        if (value := _text(meta, key)) is not None:
            ev.metadata[key] = value
    return ev
