"""Gateway overhead: an instant upstream directly, through Allmende, and through LiteLLM's proxy.

Run by hand (not a test): ``python bench/gateway_bench.py --help``. See bench/README.md.

Every target runs as its own process on loopback and is measured one after the other with
``wrk`` (keep-alive connections, non-streaming chat requests with an Authorization header):

- ``direct``: the instant upstream itself (a raw asyncio HTTP/1.1 server in this file, run as a
  separate process, answering a fixed chat completion at once),
- ``allmende``: an Allmende gateway (``allmende serve --no-default-models``) with the upstream
  registered as a contributed node of another member, and a member key (rpm and tpm limits set
  so high that they are checked but never hit): authentication, limits, fair share, node
  routing, ledger and audit are all on; afterwards the ledger and audit log are checked against
  wrk's counts (``database_sync`` is the default, ``normal``; ``allmende-full``: the same with
  ``database_sync: full``, an fsync before each answer; ``allmende-2w``: two worker processes),
- ``litellm``: LiteLLM's proxy (``litellm[proxy]``, in its own venv under the ignored
  ``bench/.build/``) with model ``bench`` -> ``openai/bench`` at the same upstream, its master
  key, no database, offline (``LITELLM_LOCAL_MODEL_COST_MAP=True``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, cast

import httpx
from procs import log_tail, stop_group, wait_ready

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
LITELLM_VENV = HERE / ".build" / "litellm-venv"
LITELLM_VERSION = "1.106.12"  # pinned: the last release before the compromised 1.107.0
COMPROMISED = {"1.107.0"}
TARGETS = ("direct", "allmende", "allmende-full", "allmende-2w", "litellm")
ALLMENDE_TARGETS = ("allmende", "allmende-full", "allmende-2w")
MODEL = "bench"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
LITELLM_MASTER_KEY = "sk-bench-master-key"

# ---- the instant upstream ----------------------------------------------------------------------

_CREATED = 1_700_000_000
_USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
_CHAT = {
    "id": "chatcmpl-instant",
    "object": "chat.completion",
    "created": _CREATED,
    "model": MODEL,
    "system_fingerprint": None,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": _USAGE,
}


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-instant",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _response(status: str, content_type: str, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


_JSON = json.dumps(_CHAT, separators=(",", ":")).encode()
_SSE = b"".join(
    [
        _chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hello!"}}]),
        _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        _chunk([], _USAGE),
        b"data: [DONE]\n\n",
    ]
)
_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
).encode()
_CANNED = {
    (keep, kind): _response(status, ctype, body, keep)
    for keep in (True, False)
    for kind, status, ctype, body in [
        ("json", "200 OK", "application/json", _JSON),
        ("sse", "200 OK", "text/event-stream", _SSE),
        ("models", "200 OK", "application/json", _MODELS),
        ("404", "404 Not Found", "application/json", b'{"error":{"message":"not found"}}'),
    ]
}


class InstantUpstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive: POST .../chat/completions gets a fixed answer at once (SSE when the
    body asks for ``stream: true``), GET .../models the one model, anything else 404."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, path, version = (lines[0].split(" ") + ["", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            start = end + 4
            if "chunked" in headers.get("transfer-encoding", ""):
                body, rest = _dechunk(self.buf[start:])
                if body is None:
                    return
            else:
                length = int(headers.get("content-length") or 0)
                if len(self.buf) < start + length:
                    return
                body, rest = self.buf[start : start + length], self.buf[start + length :]
            self.buf = rest
            conn = headers.get("connection", "")
            keep = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
            if method == "POST" and path.endswith("/chat/completions"):
                stream = b'"stream":true' in body.replace(b" ", b"")
                kind = "sse" if stream else "json"
            elif method == "GET" and path.rstrip("/").endswith("/models"):
                kind = "models"
            else:
                kind = "404"
            self.transport.write(_CANNED[(keep, kind)])
            if not keep:
                self.transport.close()
                return


def _dechunk(data: bytes) -> tuple[bytes | None, bytes]:
    """A chunked body and what follows it, or (None, data) while it is incomplete."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None, data
        size = int(data[pos:eol].split(b";")[0], 16)
        if len(data) < eol + 2 + size + 2:
            return None, data
        if size == 0:
            trailer = data.find(b"\r\n\r\n", eol)
            if trailer < 0:
                return None, data
            return b"".join(out), data[trailer + 4 :]
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


def serve_upstream(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(InstantUpstream, "127.0.0.1", port, backlog=1024)
        print(f"instant upstream on {port}", flush=True)
        await server.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


# ---- servers -----------------------------------------------------------------------------------


def progress(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_pids(pgid: int) -> list[int]:
    """The live processes of a process group (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def proc_status(pid: int, field_name: str) -> int:
    """A `kB` field of /proc/PID/status (VmHWM, VmRSS), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_jiffies(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in stat[11:15])  # utime, stime, cutime, cstime
    return total


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others (all CPUs, since boot): noise on a shared VM."""
    fields = Path("/proc/stat").read_text().split("\n")[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def machine_jiffies() -> tuple[int, int]:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)  # busy (all but idle and iowait), total


def child_env(changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@dataclass
class Server:
    """One server subprocess in its own process group, logging to a file."""

    name: str
    cmd: list[str]
    url: str  # scheme://host:port
    ready_path: str
    log: Path
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset
    key: str = "sk-none"  # the bearer key the load generator sends
    ready_headers: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:
        progress(f"[{self.name}] starting: {' '.join(self.cmd)}")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=child_env(self.env),
            )
        ready = self.url + self.ready_path
        wait_ready(self.name, self.proc, ready, timeout, self.log_tail, headers=self.ready_headers)
        progress(f"[{self.name}] ready at {self.url}")

    def pids(self) -> list[int]:
        return [] if self.proc is None else group_pids(self.proc.pid)

    def peak_rss_mib(self) -> float:
        """Sum of the peak resident memory (VmHWM) of the server's processes, in MiB."""
        return sum(proc_status(pid, "VmHWM") for pid in self.pids()) / 1024

    def stop(self) -> None:
        if stop_group(self.proc):
            progress(f"[{self.name}] stopped")

    def log_tail(self, n: int = 40) -> str:
        return log_tail(self.log, n)


def upstream_server(workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-upstream", str(port)]
    return Server("upstream", cmd, f"http://127.0.0.1:{port}", "/v1/models", workdir / "up.log")


def allmende_target(
    upstream: str, workdir: Path, name: str, workers: int, sync: str = "normal"
) -> Server:
    """The Allmende gateway in front of the upstream, with a member and a key (limits on),
    as `workers` processes (``allmende-2w``: ``--workers 2``), with `database_sync` set to
    `sync` (``allmende-full``: records on disk, fsynced, before the answer; the others: in the
    database's log, the default).

    The upstream is a contributed node (of another member, ``provider``, with 64 slots so that
    16 connections never wait), so the request takes the gateway's full path: key, limits, fair
    share queue, node routing, ledger and audit."""
    data = workdir / f"{name}-data"
    env: dict[str, str | None] = {"ALLMENDE_DATA_DIR": str(data), "ALLMENDE_DATABASE_SYNC": sync}
    py = [sys.executable, "-m", "allmende"]
    commons = child_env(env)
    subprocess.run([*py, "members", "add", "bench"], env=commons, check=True, capture_output=True)
    created = subprocess.run(
        # limits high enough never to be hit, so they are checked on every request
        [*py, "keys", "create", "--member", "bench", "--rpm", "1000000000", "--tpm", "2000000000"],
        env=commons,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[0]
    subprocess.run(
        [*py, "members", "add", "provider"], env=commons, check=True, capture_output=True
    )
    subprocess.run(
        [*py, "nodes", "add", upstream, "--member", "provider", "--slots", "64"],
        env=commons,
        check=True,
        capture_output=True,
    )
    port = free_port()
    cmd = [*py, "serve", "--no-default-models", "--workers", str(workers), "--port", str(port)]
    cmd += ["--data-dir", str(data), "--log-level", "warning"]
    return Server(
        name, cmd, f"http://127.0.0.1:{port}", "/health", workdir / f"{name}.log", env, key
    )


def litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    said = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return said.stdout.strip() or None


def ensure_litellm() -> Path:
    """LiteLLM's proxy in its own venv under bench/.build (installed on first use)."""
    exe = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if not exe.exists() or litellm_version() != LITELLM_VERSION:
        progress(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV}")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    if litellm_version() in COMPROMISED:
        raise RuntimeError(
            f"litellm {litellm_version()} in {LITELLM_VENV} is a compromised release"
        )
    return exe


def litellm_target(upstream: str, workdir: Path) -> Server:
    exe = ensure_litellm()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-upstream-unused\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  turn_off_message_logging: true\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    port = free_port()
    cmd = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    env: dict[str, str | None] = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the model price list
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "DATABASE_URL": None,  # no database: no virtual keys, no spend logs
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    return Server(
        "litellm",
        cmd,
        f"http://127.0.0.1:{port}",
        "/health/liveliness",
        workdir / "litellm.log",
        env,
        LITELLM_MASTER_KEY,
    )


def direct_target(upstream: Server) -> Server:
    return upstream  # the same process; measured like the others


# ---- load --------------------------------------------------------------------------------------

WRK_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,'
    .. '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,'
    .. '"mean_us":%%.1f,"max_us":%%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk_path() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit(
            "wrk is not installed. On Debian: apt-get install -y wrk "
            "(https://github.com/wg/wrk); then run this again."
        )
    return exe


def run_wrk(
    server: Server, connections: int, seconds: float, threads: int, workdir: Path
) -> dict[str, Any]:
    """One wrk run's summary (latencies in µs; status = the count of non-2xx/3xx answers)."""
    script = workdir / f"wrk-{server.name}.lua"
    script.write_text(WRK_LUA % {"body": json.dumps(BODY), "key": server.key})
    cmd = [wrk_path(), "-t", str(min(threads, connections)), "-c", str(connections)]
    cmd += ["-d", f"{seconds:g}s", "--timeout", "10s", "-s", str(script)]
    cmd.append(f"{server.url}/v1/chat/completions")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRKJSON "):
            summary: dict[str, Any] = json.loads(line[8:])
            return summary
    raise RuntimeError(f"wrk gave no summary:\n{done.stdout}{done.stderr}")


def check_request(server: Server) -> None:
    """One request as the load generator will send it: it must succeed."""
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {server.key}"},
        timeout=30,
    )
    if r.status_code != 200:
        raise RuntimeError(f"{server.name}: HTTP {r.status_code}: {r.text[:500]}")


def measure(
    server: Server, upstream: Server, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Warm-up and one measured wrk run at each connection count."""
    check_request(server)
    out: dict[str, Any] = {"levels": {}, "sent_ok": 1, "sent_status_errors": 0}
    hz = os.sysconf("SC_CLK_TCK")
    for conns in args.connections:
        warm = run_wrk(server, conns, args.warmup, args.wrk_threads, workdir)
        out["sent_ok"] += warm["requests"] - warm["status"]
        out["sent_status_errors"] += warm["status"]
        before = cpu_jiffies(server.pids()), cpu_jiffies(upstream.pids()), machine_jiffies()
        res = run_wrk(server, conns, args.duration, args.wrk_threads, workdir)
        after = cpu_jiffies(server.pids()), cpu_jiffies(upstream.pids()), machine_jiffies()
        out["sent_ok"] += res["requests"] - res["status"]
        out["sent_status_errors"] += res["status"]
        seconds = res["duration_us"] / 1e6
        ok = res["requests"] - res["status"]
        server_s = (after[0] - before[0]) / hz
        upstream_s = (after[1] - before[1]) / hz
        busy, total = (after[2][i] - before[2][i] for i in (0, 1))
        level = {
            "connections": conns,
            "seconds": seconds,
            "requests": res["requests"],
            "ok": ok,
            "rps": ok / seconds if seconds else 0.0,
            "p50_ms": res["p50_us"] / 1000,
            "p90_ms": res["p90_us"] / 1000,
            "p99_ms": res["p99_us"] / 1000,
            "mean_ms": res["mean_us"] / 1000,
            "max_ms": res["max_us"] / 1000,
            "errors_status": res["status"],
            "errors_socket": {k: res[k] for k in ("connect", "read", "write", "timeout")},
            "server_cpu_ms_per_req": server_s * 1000 / max(ok, 1),
            "server_cpu_cores": server_s / seconds if seconds else 0.0,
            # for the gateways: the upstream behind them (0 for direct: it is the server)
            "upstream_cpu_cores": upstream_s / seconds
            if seconds and server is not upstream
            else 0.0,
            "machine_busy_pct": 100.0 * busy / max(total, 1),
        }
        progress(
            f"  [{server.name}] @{conns}: {level['rps']:.0f} req/s, p50 {level['p50_ms']:.2f} ms,"
            f" p99 {level['p99_ms']:.2f} ms, non-2xx {level['errors_status']},"
            f" socket errors {sum(level['errors_socket'].values())},"
            f" server CPU {level['server_cpu_ms_per_req']:.3f} ms/req,"
            f" machine busy {level['machine_busy_pct']:.0f}%"
        )
        out["levels"][str(conns)] = level
    out["peak_rss_mib"] = server.peak_rss_mib()
    return out


def check_commons(data_dir: Path, sent_ok: int, sent_errors: int, slack: int) -> dict[str, Any]:
    """Ledger rows and audit records against what wrk counted (plus the one check request)."""
    import sqlalchemy as sa

    from allmende.commons import db
    from allmende.commons.audit import AuditLog

    engine = db.open_database(data_dir=data_dir)
    try:
        with engine.connect() as conn:
            by_status: dict[int, int] = dict(
                conn.execute(
                    sa.select(db.ledger.c.status, sa.func.count()).group_by(db.ledger.c.status)
                ).all()
            )
            audit_rows = conn.execute(sa.select(sa.func.count()).select_from(db.audit)).scalar()
        verify = AuditLog(engine).verify()
    finally:
        engine.dispose()
    ok_rows = int(by_status.get(200, 0))
    # wrk does not count the requests still in flight when a run ends, but the gateway
    # finishes (and records) them: at most one per connection and run.
    verdict = "ok" if sent_ok <= ok_rows <= sent_ok + slack else "MISMATCH"
    return {
        "ledger_rows": sum(by_status.values()),
        "ledger_by_status": {str(k): v for k, v in by_status.items()},
        "ledger_ok_rows": ok_rows,
        "wrk_ok": sent_ok,
        "wrk_non2xx": sent_errors,
        "in_flight_slack": slack,
        "audit_records": audit_rows,
        "audit_verify_ok": verify.ok,
        "audit_verify_reason": verify.reason,
        "verdict": verdict,
    }


# ---- report ------------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _range(span: list[float] | None, digits: int) -> str:
    """`` (low–high)`` over the rounds, when there were several."""
    return "" if span is None else f" ({fmt(span[0], digits)}–{fmt(span[1], digits)})"


def table(results: dict[str, Any], levels: list[int]) -> str:
    head = ["Target", "conns", "req/s", "p50 ms", "p99 ms", "added p50 / p99 ms vs direct"]
    head += ["errors (non-2xx + socket)", "server CPU ms/req", "peak RSS MiB"]
    rows = [head, ["---"] * len(head)]
    for conns in levels:
        direct = results.get("direct", {}).get("levels", {}).get(str(conns))
        for name, res in results.items():
            s = res.get("levels", {}).get(str(conns))
            if s is None:
                rows.append([name, str(conns), "failed: " + res.get("error", "?")[:80]])
                rows[-1] += [""] * (len(head) - 3)
                continue
            added = "–"
            if direct is not None and name != "direct":
                added = (
                    f"{s['p50_ms'] - direct['p50_ms']:+.2f} / {s['p99_ms'] - direct['p99_ms']:+.2f}"
                )
            errors = s["errors_status"] + sum(s["errors_socket"].values())
            rows.append(
                [
                    name,
                    str(conns),
                    fmt(s["rps"], 0) + _range(s.get("rps_range"), 0),
                    fmt(s["p50_ms"], 2) + _range(s.get("p50_range"), 2),
                    fmt(s["p99_ms"], 2),
                    added,
                    str(errors),
                    fmt(s["server_cpu_ms_per_req"], 3),
                    fmt(res.get("peak_rss_mib"), 0),
                ]
            )
        b = results.get("litellm", {}).get("levels", {}).get(str(conns))
        for name in ALLMENDE_TARGETS:
            a = results.get(name, {}).get("levels", {}).get(str(conns))
            if a and b and b["rps"]:
                ratio = f"{a['rps'] / b['rps']:.1f}×"
                p50 = f"{a['p50_ms'] / b['p50_ms']:.3f}×" if b["p50_ms"] else "–"
                rows.append([f"{name} / LiteLLM", str(conns), ratio, p50] + [""] * (len(head) - 4))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    versions: dict[str, str | None] = {}
    for pkg in ("allmende", "httpx", "uvicorn", "fastapi", "sqlalchemy", "uvloop", "httptools"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    versions["litellm"] = litellm_version() if "litellm" in args.targets else None
    wrk = shutil.which("wrk")
    if wrk:
        said = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        versions["wrk"] = (said.stdout + said.stderr).split("\n")[0].strip()
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": names[0] if names else platform.processor(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "wrk": wrk,
        "body": BODY,
        **{k: getattr(args, k) for k in ("duration", "warmup", "connections", "wrk_threads")},
        "targets": args.targets,
        "loadavg_start": os.getloadavg(),
        "steal_s_start": steal_seconds(),
        "repeat": args.repeat,
    }


def run_target(
    name: str,
    factory: Callable[[Path], Server],
    upstream: Server,
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """Start one target, measure it at every connection count, stop it, check its ledger."""
    server = factory(workdir)
    try:
        if server is not upstream:
            server.start()
        res = measure(server, upstream, args, workdir)
        res["cmd"] = server.cmd
    except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        progress(f"[{name}] failed: {exc}")
        return {"error": str(exc)}
    finally:
        if server is not upstream:
            server.stop()
    if name in ALLMENDE_TARGETS:
        slack = 2 * sum(args.connections)  # warm-up + run at each level
        res["commons"] = check_commons(
            workdir / f"{name}-data", res["sent_ok"], res["sent_status_errors"], slack
        )
        c = res["commons"]
        progress(
            f"  [{name}] ledger: {c['ledger_ok_rows']} rows with status 200 "
            f"({c['ledger_rows']} in all), wrk counted {c['wrk_ok']} successful "
            f"(+ up to {slack} in flight when wrk stopped): {c['verdict']}; "
            f"audit {c['audit_records']} records, verify "
            f"{'ok' if c['audit_verify_ok'] else c['audit_verify_reason']}"
        )
    return res


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's rounds as one result: each figure's median over the rounds that worked
    (with the range of req/s and p50), the largest peak RSS, every ledger check."""
    done = [r for r in runs if "levels" in r]
    if not done:
        return runs[-1]
    if len(done) == 1 and len(runs) == 1:
        return done[0]
    levels: dict[str, Any] = {}
    for conns in done[0]["levels"]:
        rows = [r["levels"][conns] for r in done if conns in r["levels"]]
        level = {
            k: median([row[k] for row in rows])
            for k, v in rows[0].items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        level["errors_status"] = sum(row["errors_status"] for row in rows)  # all rounds
        level["errors_socket"] = {
            k: sum(row["errors_socket"][k] for row in rows) for k in rows[0]["errors_socket"]
        }
        level["rps_range"] = [min(row["rps"] for row in rows), max(row["rps"] for row in rows)]
        level["p50_range"] = [min(r["p50_ms"] for r in rows), max(r["p50_ms"] for r in rows)]
        level["rounds"] = len(rows)
        levels[conns] = level
    out: dict[str, Any] = {"levels": levels, "rounds": done}
    rss = [r["peak_rss_mib"] for r in done if r.get("peak_rss_mib") is not None]
    if rss:
        out["peak_rss_mib"] = max(rss)
    checks = [r["commons"] for r in done if "commons" in r]
    if checks:
        out["commons"] = {
            **checks[-1],
            "verdict": "ok" if all(c["verdict"] == "ok" for c in checks) else "MISMATCH",
            "audit_verify_ok": all(c["audit_verify_ok"] for c in checks),
            "rounds": checks,
        }
    if len(done) < len(runs):
        out["failed_rounds"] = len(runs) - len(done)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before each run")
    p.add_argument(
        "--connections", default="16", help="keep-alive connections; comma-separated for several"
    )
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated of {TARGETS}")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds: every target is measured this many times, in turn; the table shows\n"
        "medians, with the range of req/s and p50 over the rounds (default 1)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, db)")
    p.add_argument("--serve-upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    args.targets = [t for t in args.targets.split(",") if t]
    if unknown := set(args.targets) - set(TARGETS):
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    if args.serve_upstream is not None:
        serve_upstream(args.serve_upstream)
        return
    wrk_path()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    meta = machine_info(args)
    progress(f"targets {', '.join(args.targets)}; load avg {meta['loadavg_start']}")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    results: dict[str, Any] = {}
    upstream = upstream_server(workdir)
    try:
        upstream.start()
        factories: dict[str, Callable[[Path], Server]] = {
            "direct": lambda _: direct_target(upstream),
            "allmende": lambda d: allmende_target(upstream.url, d, "allmende", 1),
            "allmende-full": lambda d: allmende_target(
                upstream.url, d, "allmende-full", 1, sync="full"
            ),
            "allmende-2w": lambda d: allmende_target(upstream.url, d, "allmende-2w", 2),
            "litellm": lambda d: litellm_target(upstream.url, d),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.targets}
        for round_no in range(1, args.repeat + 1):
            if args.repeat > 1:
                progress(f"round {round_no} of {args.repeat}")
            here = workdir / f"round-{round_no}"
            here.mkdir()
            for name in args.targets:
                runs[name].append(run_target(name, factories[name], upstream, args, here))
        for name in args.targets:
            results[name] = combine(runs[name])
        results.setdefault("direct", {}).setdefault("peak_rss_mib", upstream.peak_rss_mib())
    finally:
        upstream.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            progress(f"work directory kept: {workdir}")
    meta["loadavg_end"] = os.getloadavg()
    meta["steal_s"] = steal_seconds() - meta.pop("steal_s_start")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"gateway-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(table(results, args.connections))
    load = f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}"
    print(f"\n{meta['cpu']}, {meta['cores']} cores; wrk {args.wrk_threads} thread(s),")
    rounds = f"{args.repeat} rounds (medians; ranges in brackets), " if args.repeat > 1 else ""
    print(
        f"{rounds}{args.duration:g} s per run after {args.warmup:g} s warm-up; load avg (1 min) "
        f"{load}; CPU time stolen by the hypervisor during the runs: {meta['steal_s']:.1f} s"
    )
    for name in ALLMENDE_TARGETS:
        c = results.get(name, {}).get("commons")
        if not c:
            continue
        print(
            f"\n{name} ledger: {c['ledger_ok_rows']} successful rows, wrk counted "
            f"{c['wrk_ok']} successful requests (+ up to {c['in_flight_slack']} in flight at "
            f"the end of runs): {c['verdict']}; audit: {c['audit_records']} records, verify "
            f"{'ok' if c['audit_verify_ok'] else 'FAILED: ' + str(c['audit_verify_reason'])}"
        )
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
