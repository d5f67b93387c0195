"""Streaming-chat benchmark: Allmende vs llama.cpp's llama-server and llama-cpp-python's server.

Run by hand (not a test): ``python bench/serve_bench.py --help``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from procs import log_tail, stop_group, wait_ready

PROMPTS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Write a long story about a lighthouse keeper and a lost ship.",
    "Write a long essay about the history of the bicycle.",
    "Write a long story about a robot exploring an abandoned city.",
    "Write a long letter to a friend describing a trip to the mountains.",
]
SERVERS = ("allmende", "llama-server", "llamacpp-python")
TIMEOUT = httpx.Timeout(600.0, connect=30.0)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class StreamResult:
    prompt: int
    start: float  # perf_counter() when the request was sent
    end: float = 0.0  # ... when the stream closed
    first: float | None = None  # ... at the first / last content chunk
    last: float | None = None
    status: int = 0
    chunks: int = 0  # content-bearing SSE chunks: one token each, in both servers
    usage_tokens: int | None = None  # completion_tokens of the usage chunk, if one came
    finish_reason: str | None = None
    done: bool = False  # saw `data: [DONE]`
    ids: set[str] = field(default_factory=set)
    error: str | None = None
    content: str = ""

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start

    def broken_reason(self) -> str | None:
        if self.error:
            return self.error
        if self.status != 200:
            return f"HTTP {self.status}"
        if not self.done:
            return "no [DONE]"
        if self.finish_reason is None:
            return "no finish_reason (interrupted)"
        if len(self.ids) > 1:
            return "chunks of several completions (interleaved)"
        return None

    def record(self) -> dict[str, Any]:
        """The raw per-stream numbers kept in the JSON results."""
        decode = self.last - self.first if self.first and self.last else None
        ms = {"ttft_ms": self.ttft, "decode_ms": decode, "duration_ms": self.end - self.start}
        keep = ("prompt", "status", "chunks", "usage_tokens", "finish_reason", "done")
        return {
            **{k: None if v is None else round(v * 1000, 1) for k, v in ms.items()},
            **{k: getattr(self, k) for k in keep},
            "broken": self.broken_reason(),
            "content_head": self.content[:60],
        }


async def stream_chat(
    client: httpx.AsyncClient, url: str, prompt: int, max_tokens: int
) -> StreamResult:
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": PROMPTS[prompt]}],
        "stream": True,
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    r = StreamResult(prompt=prompt, start=time.perf_counter())
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
            r.status = resp.status_code
            if resp.status_code != 200:
                r.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"
            else:
                await read_sse(resp, r)
    except Exception as exc:  # any failure is a broken stream
        r.error = f"{type(exc).__name__}: {exc}"
    r.end = time.perf_counter()
    return r


async def read_sse(resp: httpx.Response, r: StreamResult) -> None:
    async for line in resp.aiter_lines():
        if line.startswith("event:") and "error" in line:
            r.error = f"error event: {line}"
        if not line.startswith("data:"):
            continue  # blank separators and `: ping` comments
        data = line[5:].strip()
        if data == "[DONE]":
            r.done = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            r.error = f"error chunk: {json.dumps(chunk)[:200]}"
            continue
        if chunk.get("id"):
            r.ids.add(chunk["id"])
        if chunk.get("usage"):
            r.usage_tokens = chunk["usage"].get("completion_tokens")
        for choice in chunk.get("choices") or []:
            if text := (choice.get("delta") or {}).get("content"):
                r.last = time.perf_counter()
                r.first = r.first or r.last
                r.chunks += 1
                r.content += text
            r.finish_reason = choice.get("finish_reason") or r.finish_reason


def pct(values: list[float], q: float) -> float | None:
    """Percentile, interpolating linearly between the closest ranks."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(results: list[StreamResult], wall: float, ref: dict[int, str]) -> dict[str, Any]:
    ttfts = [r.ttft * 1000 for r in results if r.ttft is not None]
    usage = [r.usage_tokens for r in results if r.usage_tokens is not None]
    tokens = sum(r.chunks for r in results)
    good = sum(r.chunks for r in results if not r.broken_reason())
    return {
        "requests": len(results),
        "wall_s": wall,
        "tokens_chunks": tokens,
        "tokens_usage": sum(usage) if len(usage) == len(results) else None,
        "usage_matches_chunks": sum(r.usage_tokens == r.chunks for r in results),
        "agg_tok_s": tokens / wall,
        "goodput_tok_s": good / wall,  # tokens of unbroken streams only
        "ttft_ms_p50": pct(ttfts, 50),
        "ttft_ms_p99": pct(ttfts, 99),
        "broken": sum(r.broken_reason() is not None for r in results),
        "broken_by_reason": Counter(r.broken_reason() for r in results if r.broken_reason()),
        # unbroken streams whose text differs from the sequential run of the same prompt (temp 0)
        "differs_from_sequential": sum(
            r.content != ref.get(r.prompt, r.content) for r in results if not r.broken_reason()
        ),
        "streams": [r.record() for r in results],
    }


async def run_phase(
    url: str, phase: str, args: argparse.Namespace, ref: dict[int, str]
) -> dict[str, Any]:
    """One measurement on a freshly started server: `single`, or N concurrent clients."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        await stream_chat(client, url, 0, args.max_tokens)  # warm-up, discarded
        if phase == "single":
            single = []
            for i in range(args.single_requests):
                single.append(await stream_chat(client, url, i % len(PROMPTS), args.max_tokens))
            ref.update({r.prompt: r.content for r in single if not r.broken_reason()})
            timed = [r for r in single if r.first and r.last and r.chunks > 1]
            decode_s = sum(r.last - r.first for r in timed)  # type: ignore[operator]
            busy_s = sum(r.end - r.start for r in single)
            # n tokens span n - 1 inter-token gaps
            decode = sum(r.chunks - 1 for r in timed) / decode_s if timed else None
            e2e = sum(r.chunks for r in single) / busy_s
            progress(f"  single stream: {decode or 0:.1f} decode, {e2e:.1f} e2e tok/s")
            return {"decode_tok_s": decode, "e2e_tok_s": e2e, **summarize(single, busy_s, ref)}

        async def client_loop(c: int) -> list[StreamResult]:
            prompts = [(c + i) % len(PROMPTS) for i in range(args.requests_per_client)]
            return [await stream_chat(client, url, p, args.max_tokens) for p in prompts]

        t0 = time.perf_counter()
        per_client = await asyncio.gather(*(client_loop(c) for c in range(int(phase))))
        results = [r for rs in per_client for r in rs]
        s = summarize(results, time.perf_counter() - t0, ref)
        progress(
            f"  @{phase}: {s['agg_tok_s']:.1f} tok/s ({s['goodput_tok_s']:.1f} in unbroken"
            f" streams), TTFT p50 {s['ttft_ms_p50'] or 0:.0f} ms,"
            f" broken {s['broken']}/{s['requests']}"
        )
        return s


def cpu_ticks(*pids: int) -> tuple[int, int, int]:
    """Machine busy and total jiffies, and jiffies used by `pids` (Linux /proc)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    ours = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ours += sum(int(x) for x in stat[11:15])  # utime, stime, cutime, cstime
    return sum(f) - f[3] - f[4], sum(f), ours  # busy = all but idle and iowait


def foreign_cpu(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """Percent of the machine's CPU used by processes other than `pids` in between."""
    (b0, t0, o0), (b1, t1, o1) = before, after
    return max(0.0, 100.0 * ((b1 - b0) - (o1 - o0)) / max(t1 - t0, 1))


def wait_quiet(args: argparse.Namespace) -> float:
    """Wait (at most --settle s) until other processes use < --quiet % CPU; return the last %."""
    me, busy = os.getpid(), 0.0
    for waited in range(int(args.settle) + 1):
        before = cpu_ticks(me)
        time.sleep(1)
        if (busy := foreign_cpu(before, cpu_ticks(me))) < args.quiet:
            break
        if waited % 10 == 0:
            progress(f"  other processes use {busy:.0f}% CPU (>= {args.quiet:.0f}%), waiting")
    return busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server subprocess in its own process group, logging to a file."""

    def __init__(
        self, name: str, model: str, threads: int, logdir: Path, parallel: int = 8
    ) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        py, port = sys.executable, str(self.port)
        if name == "allmende":
            self.cmd = [py, "-m", "allmende", "serve", "--port", port, "--model", f"smol={model}"]
            self.cmd += ["--threads", str(threads), "--log-level", "warning"]
            self.cmd += ["--parallel", str(parallel), "--context-length", "2048"]
            self.ready_path = "/health"
        elif name == "llama-server":
            from llama_server import ensure_llama_server

            self.cmd = [str(ensure_llama_server()), "-m", model, "--port", port, "-t", str(threads)]
            self.cmd += ["-np", str(parallel), "-c", str(parallel * 2048), "--alias", "smol"]
            self.ready_path = "/health"
        else:
            self.cmd = [py, "-m", "llama_cpp.server", "--model", model, "--port", port]
            self.cmd += ["--n_threads", str(threads), "--n_ctx", "4096", "--model_alias", "smol"]
            self.ready_path = "/v1/models"
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:
        progress(f"[{self.name}] starting: {' '.join(self.cmd)}")
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_ready(
            self.name, self.proc, self.url + self.ready_path, timeout, self.log_tail, poll=0.5
        )
        progress(f"[{self.name}] ready on port {self.port}")

    def stop(self) -> None:
        if stop_group(self.proc):
            progress(f"[{self.name}] stopped")

    def peak_rss_mb(self) -> float | None:
        """The server process's peak resident memory (VmHWM), in MiB."""
        if self.proc is None:
            return None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def log_tail(self, n: int = 30) -> str:
        return log_tail(self.log, n)


def progress(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": names[0] if names else platform.processor(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: md.version(p) for p in ("allmende", "llama-cpp-python", "httpx")},
        "model": args.model,
        "model_bytes": Path(args.model).stat().st_size,
        **{k: getattr(args, k) for k in ("threads", "max_tokens", "concurrency")},
        **{k: getattr(args, k) for k in ("requests_per_client", "single_requests")},
        "loadavg_start": os.getloadavg(),
    }


def fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def table(results: dict[str, Any], levels: list[int]) -> str:
    head = ["Server", "single tok/s (decode / e2e)"]
    head += [f"agg tok/s @{c}" for c in levels]
    head += [f"TTFT p50 / p99 ms @{c}" for c in levels]
    head += [f"broken @{c}" for c in levels] + ["peak RSS MiB", "other procs' CPU % (max)"]
    rows = [head, ["---"] * len(head)]
    for name, res in results.items():
        one, at = res["single"], [res["concurrency"][str(c)] for c in levels]
        row = [name, f"{fmt(one['decode_tok_s'])} / {fmt(one['e2e_tok_s'])}"]
        row += [fmt(s["agg_tok_s"]) for s in at]
        row += [f"{fmt(s['ttft_ms_p50'], 0)} / {fmt(s['ttft_ms_p99'], 0)}" for s in at]
        row += [f"{s['broken']} of {s['requests']}" for s in at]
        phases = [one, *at]
        rss = [s.get("peak_rss_mb") or 0 for s in phases]
        row.append(fmt(max(rss), 0))
        rows.append(row + [f"{max(s['foreign_cpu'] for s in phases):.0f}"])

    def ratio(x: float | None, y: float | None) -> str:
        return f"{x / y:.2f}×" if x and y else "–"

    a = results.get("allmende")
    for peer in [n for n in results if n != "allmende"] if a else []:
        b = results[peer]
        one = [ratio(a["single"][k], b["single"][k]) for k in ("decode_tok_s", "e2e_tok_s")]
        row = [f"Allmende / {peer}", " / ".join(one)]
        ac, bc = a["concurrency"], b["concurrency"]
        row += [ratio(ac[str(c)]["agg_tok_s"], bc[str(c)]["agg_tok_s"]) for c in levels]
        row += [ratio(ac[str(c)]["ttft_ms_p50"], bc[str(c)]["ttft_ms_p50"]) for c in levels]
        rows.append(row + [""] * (len(head) - len(row)))
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def notes(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, res in results.items():
        for level, s in [("single", res["single"]), *res["concurrency"].items()]:
            at = level if level == "single" else f"@{level}"
            usage = f"usage.completion_tokens == content chunks in {s['usage_matches_chunks']}"
            if s["tokens_usage"] is None and not s["usage_matches_chunks"]:
                usage = "no usage chunk (include_usage ignored): tokens = content chunks"
            lines.append(f"- {name} {at}: {usage} of {s['requests']} streams")
            lines += [f"  - broken ×{n}: {why}" for why, n in s["broken_by_reason"].items()]
            if n := s["differs_from_sequential"]:
                lines.append(f"  - {n} unbroken stream(s) differ from the sequential temp-0 text")
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", help="GGUF file (default: packaged SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--requests-per-client", type=int, default=4)
    p.add_argument("--single-requests", type=int, default=len(PROMPTS))
    p.add_argument("--concurrency", default="1,4,8,16", help="comma-separated client counts")
    p.add_argument("--parallel", type=int, default=8, help="slots of Allmende and llama-server")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated subset of {SERVERS}"
    )
    p.add_argument("--quiet", type=float, default=20, help="other processes' CPU %% limit")
    p.add_argument("--settle", type=float, default=60, help="max seconds to wait for --quiet")
    p.add_argument("--retries", type=int, default=1, help="repeats of a phase above --quiet")
    args = p.parse_args()
    if args.model is None:
        from allmende.models.resolve import PACKAGED

        args.model = str(PACKAGED["smollm2-135m-instruct"].locate())
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def measure(
    name: str, phase: str, args: argparse.Namespace, ref: dict[int, str], logdir: str
) -> dict[str, Any]:
    """Run one phase on a fresh server; repeat it (--retries) if other processes got busy."""
    for attempt in range(args.retries + 1):
        idle_bg = wait_quiet(args)
        server = Server(name, args.model, args.threads, Path(logdir), args.parallel)
        try:
            server.start()
            assert server.proc is not None
            progress(f"[{name}] {phase}: other processes used {idle_bg:.0f}% CPU before")
            before = cpu_ticks(server.proc.pid, os.getpid())
            res = asyncio.run(run_phase(server.url, phase, args, ref))
            res["foreign_cpu"] = foreign_cpu(before, cpu_ticks(server.proc.pid, os.getpid()))
            res["peak_rss_mb"] = server.peak_rss_mb()
        finally:
            server.stop()
        if res["foreign_cpu"] < args.quiet or attempt == args.retries:
            return res
        progress(f"  other processes used {res['foreign_cpu']:.0f}% CPU meanwhile; repeating")
    raise AssertionError("unreachable")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    meta = machine_info(args)
    progress(f"model {args.model}, {args.threads} threads, load avg {meta['loadavg_start']}")
    names = [n for n in args.servers.split(",") if n]
    if unknown := set(names) - set(SERVERS):
        raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {n: {"single": {}, "concurrency": {}} for n in names}
    refs: dict[str, dict[int, str]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as logdir:
        # Each phase on a fresh server; the servers take turns (ABBA) so drifting background
        # load does not fall on one of them only.
        for i, phase in enumerate(["single", *map(str, args.concurrency)]):
            for name in names if i % 2 == 0 else names[::-1]:
                res = measure(name, phase, args, refs[name], logdir)
                if phase == "single":
                    results[name]["single"] = res
                else:
                    results[name]["concurrency"][phase] = res
    meta["loadavg_end"] = os.getloadavg()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"serve-{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(table(results, args.concurrency))
    v, load = meta["versions"], f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}"
    print(f"\n{meta['cpu']}, {meta['cores']} cores, {args.threads} threads; allmende")
    print(f"{v['allmende']}, llama-cpp-python {v['llama-cpp-python']} (llama-server built from")
    print(f"its vendored llama.cpp); {Path(args.model).name}; {args.parallel} slots;")
    print(f"max_tokens {args.max_tokens}; load avg (1 min) {load}\n")
    print("\n".join(notes(results)) + f"\n\nraw results: {out}")


if __name__ == "__main__":
    main()
