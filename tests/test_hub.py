"""Hub downloads against a local mirror that speaks the endpoints huggingface_hub calls.

The mirror (stdlib http.server on 127.0.0.1) serves repos from a temporary directory:

    GET  /api/models/{repo}                      model info: sha + siblings
    GET  /api/models/{repo}/revision/{rev}       the same, at a revision
    GET  /api/models/{repo}/tree/{rev}           recursive file listing (snapshot_download)
    HEAD /{repo}/resolve/{rev}/{path}            X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{path}            the file

Errors carry the Hub's X-Error-Code header (RepoNotFound, GatedRepo, RevisionNotFound,
EntryNotFound), which is how huggingface_hub picks its exception types.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from huggingface_hub import constants

from allmende.errors import ConfigError
from allmende.models.hub import download, is_hub_id

GGUF_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
QUANTS = ("Q4_1", "Q4_K_M", "Q4_K_S", "Q8_0")
ST_REPO = "sentence-transformers/all-MiniLM-L6-v2"
ST_FILES = {
    "config.json": b'{"model_type": "bert"}',
    "model.safetensors": b"safetensors" + bytes(64),
    "pytorch_model.bin": b"pickle" + bytes(64),
    "onnx/model.onnx": b"onnx" + bytes(64),
    "tokenizer.json": b"{}",
    "tokenizer_config.json": b"{}",
    "special_tokens_map.json": b"{}",
    "vocab.txt": b"[PAD]\n[UNK]\n",
    "modules.json": b"[]",
    "sentence_bert_config.json": b"{}",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "README.md": b"# MiniLM",
}


def gguf_bytes(tag: str) -> bytes:
    return b"GGUF" + tag.encode() + bytes(256)


class HubMirror:
    """A fake Hugging Face Hub serving `root/{owner}/{name}/...` (one revision: main)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        self.gated: set[str] = set()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.handle(self, head=False)

            def do_HEAD(self) -> None:
                mirror.handle(self, head=True)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.running = False

    def add(self, repo_id: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = self.root / repo_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def files(self, repo_id: str) -> list[str]:
        base = self.root / repo_id
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    @staticmethod
    def sha(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = urlsplit(req.path).path
        self.requests.append((req.command, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            if not self.check(req, repo_id, rest[1] if len(rest) > 1 else "main"):
                return
            if rest[:1] == ["tree"]:
                tree = [
                    {"type": "file", "path": f, "size": self.size(repo_id, f), "oid": "0" * 40}
                    for f in self.files(repo_id)
                ]
                return self.send(req, 200, json.dumps(tree).encode(), head=head)
            info = {
                "id": repo_id,
                "sha": self.sha(repo_id),
                "private": False,
                "siblings": [{"rfilename": f} for f in self.files(repo_id)],
            }
            return self.send(req, 200, json.dumps(info).encode(), head=head)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if not self.check(req, repo_id, revision):
                return
            file = self.root / repo_id / filename
            if not file.is_file():
                return self.error(req, 404, "EntryNotFound", head=head, repo_id=repo_id)
            data = file.read_bytes()
            headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            return self.send(req, 200, data, head=head, repo_id=repo_id, extra=headers)
        self.error(req, 404, "NotFound", head=head)

    def size(self, repo_id: str, name: str) -> int:
        return (self.root / repo_id / name).stat().st_size

    def check(self, req: BaseHTTPRequestHandler, repo_id: str, revision: str) -> bool:
        head = req.command == "HEAD"
        if not (self.root / repo_id).is_dir():
            self.error(req, 404, "RepoNotFound", head=head)
        elif repo_id in self.gated:
            self.error(req, 401, "GatedRepo", head=head)
        elif revision not in ("main", self.sha(repo_id)):
            self.error(req, 404, "RevisionNotFound", head=head)
        else:
            return True
        return False

    def error(
        self, req: BaseHTTPRequestHandler, status: int, code: str, *, head: bool, repo_id: str = ""
    ) -> None:
        body = json.dumps({"error": code}).encode()
        self.send(req, status, body, head=head, repo_id=repo_id, extra={"X-Error-Code": code})

    def send(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        *,
        head: bool,
        repo_id: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        req.send_response(status)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Content-Type", "application/octet-stream")
        if repo_id:
            req.send_header("X-Repo-Commit", self.sha(repo_id))
        for key, value in (extra or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if not head:
            req.wfile.write(body)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubMirror]:
    # Keep huggingface_hub's once-a-day agent-registry fetch off the real Hub.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = HubMirror(tmp_path / "mirror")
    hub.add(GGUF_REPO, {f"SmolLM2-135M-Instruct-{q}.gguf": gguf_bytes(q) for q in QUANTS})
    hub.add(GGUF_REPO, {"README.md": b"# SmolLM2"})
    hub.add(ST_REPO, ST_FILES)
    yield hub
    hub.stop()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("owner/name", True),
        ("owner/name:Q4_1", True),
        ("bartowski/SmolLM2-135M-Instruct-GGUF:q4_k_m", True),
        ("sentence-transformers/all-MiniLM-L6-v2", True),
        ("owner/name:model.Q4_1.gguf", True),
        ("/abs/path", False),
        ("./rel", False),
        ("http://x/v1", False),
        ("smollm2", False),
        ("owner/name/extra", False),
        ("owner--x/name", False),
    ],
)
def test_is_hub_id(text: str, expected: bool) -> None:
    assert is_hub_id(text) is expected


@pytest.mark.parametrize(
    ("selector", "quant"), [("Q4_1", "Q4_1"), ("q4_k_s", "Q4_K_S"), ("Q8_0", "Q8_0")]
)
def test_selector_picks_that_quant(
    mirror: HubMirror, cache: Path, selector: str, quant: str
) -> None:
    path = download(f"{GGUF_REPO}:{selector}", cache_dir=cache, endpoint=mirror.endpoint)
    assert path.name == f"SmolLM2-135M-Instruct-{quant}.gguf"
    assert path.read_bytes() == gguf_bytes(quant)
    assert len(list(cache.rglob("*.gguf"))) == 1  # only the chosen file was fetched
    resolve = f"/{GGUF_REPO}/resolve/main/SmolLM2-135M-Instruct-{quant}.gguf"
    assert ("HEAD", resolve) in mirror.requests and ("GET", resolve) in mirror.requests


def test_exact_filename_selector(mirror: HubMirror, cache: Path) -> None:
    name = "SmolLM2-135M-Instruct-Q4_K_S.gguf"
    path = download(f"{GGUF_REPO}:{name}", cache_dir=cache, endpoint=mirror.endpoint)
    assert path.name == name


def test_default_prefers_q4_k_m_and_logs(
    mirror: HubMirror, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="allmende.models"):
        path = download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint)
    assert path.name == "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert f"Downloading {GGUF_REPO}/{path.name} from {mirror.endpoint}" in caplog.messages


def test_default_preference_order(mirror: HubMirror, cache: Path) -> None:
    mirror.add("o/quants", {f"m-{q}.gguf": gguf_bytes(q) for q in ("Q8_0", "Q4_0", "Q6_K")})
    mirror.add("o/plain", {"m-f16.gguf": b"GGUF16", "m-bf16.gguf": b"GGUFbf", "mmproj-a.gguf": b""})
    assert download("o/quants", cache_dir=cache, endpoint=mirror.endpoint).name == "m-Q4_0.gguf"
    assert download("o/plain", cache_dir=cache, endpoint=mirror.endpoint).name == "m-bf16.gguf"


@pytest.mark.parametrize("selector", ["Q5_K_M", "Q4_K", "nope.gguf"])
def test_selector_matching_nothing_lists_the_files(
    mirror: HubMirror, cache: Path, selector: str
) -> None:
    with pytest.raises(ConfigError) as info:
        download(f"{GGUF_REPO}:{selector}", cache_dir=cache, endpoint=mirror.endpoint)
    assert "matches no GGUF files" in info.value.message
    for quant in QUANTS:
        assert f"SmolLM2-135M-Instruct-{quant}.gguf" in info.value.message
    assert not list(cache.rglob("*.gguf"))


def test_selector_matching_several_files(mirror: HubMirror, cache: Path) -> None:
    mirror.add("o/twins", {"a/m-Q4_0.gguf": b"GGUFa", "b/m-Q4_0.gguf": b"GGUFb"})
    with pytest.raises(ConfigError, match="matches several GGUF files.*a/m-Q4_0.gguf"):
        download("o/twins:Q4_0", cache_dir=cache, endpoint=mirror.endpoint)


def test_split_gguf_is_rejected(mirror: HubMirror, cache: Path) -> None:
    mirror.add("o/split", {f"m-Q8_0-0000{i}-of-00002.gguf": b"GGUF" for i in (1, 2)})
    with pytest.raises(ConfigError, match="split GGUF"):
        download("o/split:Q8_0", cache_dir=cache, endpoint=mirror.endpoint)
    with pytest.raises(ConfigError, match="split GGUF"):
        download("o/split", cache_dir=cache, endpoint=mirror.endpoint)


def test_sentence_transformers_snapshot(
    mirror: HubMirror, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="allmende.models"):
        folder = download(ST_REPO, cache_dir=cache, endpoint=mirror.endpoint)
    assert folder.is_dir()
    assert (folder / "config.json").read_bytes() == ST_FILES["config.json"]
    assert (folder / "model.safetensors").read_bytes() == ST_FILES["model.safetensors"]
    for name in ("tokenizer.json", "vocab.txt", "modules.json", "1_Pooling/config.json"):
        assert (folder / name).is_file(), name
    for name in ("pytorch_model.bin", "onnx/model.onnx", "README.md"):
        assert not (folder / name).exists(), name
    assert any(m.startswith(f"Downloading {ST_REPO}/") for m in caplog.messages)


def test_selector_on_a_repo_without_gguf(mirror: HubMirror, cache: Path) -> None:
    with pytest.raises(ConfigError, match="no GGUF files"):
        download(f"{ST_REPO}:Q4_1", cache_dir=cache, endpoint=mirror.endpoint)


@pytest.mark.parametrize("source", [f"{GGUF_REPO}:Q4_1", GGUF_REPO, ST_REPO])
def test_cached_model_needs_no_request(mirror: HubMirror, cache: Path, source: str) -> None:
    first = download(source, cache_dir=cache, endpoint=mirror.endpoint)
    seen = len(mirror.requests)
    assert download(source, cache_dir=cache, endpoint=mirror.endpoint) == first
    assert mirror.requests[seen:] == []
    mirror.stop()
    assert download(source, cache_dir=cache, endpoint=mirror.endpoint) == first
    assert (
        download(source, cache_dir=cache, endpoint=mirror.endpoint, allow_download=False) == first
    )


def test_cached_quant_is_used_offline_without_selector(mirror: HubMirror, cache: Path) -> None:
    download(f"{GGUF_REPO}:Q8_0", cache_dir=cache, endpoint=mirror.endpoint)
    mirror.stop()
    path = download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint, allow_download=False)
    assert path.name == "SmolLM2-135M-Instruct-Q8_0.gguf"
    with pytest.raises(ConfigError, match="downloads are off"):
        download(
            f"{GGUF_REPO}:Q4_1", cache_dir=cache, endpoint=mirror.endpoint, allow_download=False
        )


def test_downloads_off_with_empty_cache(mirror: HubMirror, cache: Path) -> None:
    with pytest.raises(
        ConfigError, match="not in the local Hugging Face cache and downloads are off"
    ):
        download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint, allow_download=False)
    assert mirror.requests == []


def test_hf_hub_offline_means_downloads_off(
    mirror: HubMirror, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="downloads are off"):
        download(ST_REPO, cache_dir=cache, endpoint=mirror.endpoint)
    assert mirror.requests == []


def test_unknown_repo(mirror: HubMirror, cache: Path) -> None:
    with pytest.raises(ConfigError, match="'nobody/nothing' .* was not found"):
        download("nobody/nothing", cache_dir=cache, endpoint=mirror.endpoint)


def test_gated_repo(mirror: HubMirror, cache: Path) -> None:
    mirror.gated.add(GGUF_REPO)
    with pytest.raises(ConfigError, match="is gated"):
        download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint)


def test_unknown_revision(mirror: HubMirror, cache: Path) -> None:
    with pytest.raises(ConfigError, match="has no revision 'v9'"):
        download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint, revision="v9")


def test_server_down(mirror: HubMirror, cache: Path) -> None:
    mirror.stop()
    with pytest.raises(ConfigError) as info:
        download(GGUF_REPO, cache_dir=cache, endpoint=mirror.endpoint)
    assert GGUF_REPO in info.value.message and mirror.endpoint in info.value.message


def test_not_a_hub_id(cache: Path) -> None:
    with pytest.raises(ConfigError, match="not a Hugging Face id"):
        download("./rel", cache_dir=cache)


def test_endpoint_defaults_to_hf_endpoint(mirror: HubMirror, cache: Path) -> None:
    """HF_ENDPOINT is read when huggingface_hub is imported, so check it in a fresh process."""
    code = (
        "import sys; from pathlib import Path; from allmende.models.hub import download; "
        "print(download(sys.argv[1], cache_dir=Path(sys.argv[2])))"
    )
    env = {**os.environ, "HF_ENDPOINT": mirror.endpoint, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-c", code, f"{GGUF_REPO}:Q4_1", str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("SmolLM2-135M-Instruct-Q4_1.gguf")
    assert ("GET", f"/api/models/{GGUF_REPO}") in mirror.requests
