"""Where a request's time goes inside the Allmende gateway (a profiling aid, not a test).

Sets up the same gateway as ``gateway_bench.py`` (an instant upstream as a contributed node of
another member, a member key with limits, SQLite commons), but runs it with timing hooks around
the stages of a request, drives it with wrk, and prints the median of each stage:

    python bench/gateway_timing.py --connections 1 --duration 8

Stages: ``admit`` (key and limits), ``upstream_first`` / ``upstream_all`` (the node, to its
first event / to its last), ``account`` (ledger, limit counts and audit committed), of which
``recorder_write`` is the writer thread's transaction (``recorder_batch``: requests per
transaction, printed in the ms column), and ``respond`` (the route's generation,
from the engine call to the response object). What wrk measures beyond ``respond`` is uvicorn,
FastAPI and the network.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPORT_SIGNAL = signal.SIGUSR1


def serve_instrumented(argv: list[str]) -> None:
    """Run `allmende serve ARGV` with timing hooks; on SIGUSR1 print the stage medians."""
    from allmende.api import gate, serving
    from allmende.cli import main
    from allmende.commons import recorder
    from allmende.gateway import engine

    times: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                times[name].append(time.perf_counter() - began)

        return wrapper

    serving.Generation.respond = timed("respond", serving.Generation.respond)  # type: ignore[method-assign]
    gate.Gate.admit = timed("admit", gate.Gate.admit)  # type: ignore[method-assign]
    gate.Gate.account = timed("account", gate.Gate.account)  # type: ignore[method-assign]
    write = recorder.Recorder._write

    def timed_write(self: Any, work: Any, deltas: Any) -> None:
        began = time.perf_counter()
        write(self, work, deltas)
        times["recorder_write"].append(time.perf_counter() - began)
        times["recorder_batch"].append(len(work) / 1000)  # shown as "ms": requests per batch

    recorder.Recorder._write = timed_write  # type: ignore[method-assign]
    generate = engine.PoolEngine._generate

    async def timed_generate(self: Any, *args: Any) -> Any:
        began, first = time.perf_counter(), True
        async for event in generate(self, *args):
            if first:
                times["upstream_first"].append(time.perf_counter() - began)
                first = False
            yield event
        times["upstream_all"].append(time.perf_counter() - began)

    engine.PoolEngine._generate = timed_generate  # type: ignore[method-assign]

    def report(*_: object) -> None:
        print("TIMING-REPORT", flush=True)
        for name, values in sorted(times.items()):
            print(f"TIMING {name} {len(values)} {median(values) * 1000:.3f}", flush=True)
        times.clear()

    signal.signal(REPORT_SIGNAL, report)
    sys.argv = ["allmende", "serve", *argv]
    main()


def main() -> None:
    import gateway_bench as gb

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--sync", choices=("full", "normal"), default="normal", help="database_sync")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gateway-timing-"))
    upstream = gb.upstream_server(workdir)
    upstream.start()
    try:
        server = gb.allmende_target(upstream.url, workdir, "allmende", 1, args.sync)
        # Same command, through this file's hooks instead of `python -m allmende`.
        server.cmd = [sys.executable, __file__, "--instrumented", *server.cmd[4:]]
        server.start()
        try:
            gb.check_request(server)
            gb.run_wrk(server, args.connections, args.warmup, 1, workdir)
            assert server.proc is not None
            server.proc.send_signal(REPORT_SIGNAL)  # discard the warm-up's timings
            res = gb.run_wrk(server, args.connections, args.duration, 1, workdir)
            time.sleep(0.5)
            server.proc.send_signal(REPORT_SIGNAL)
            time.sleep(0.5)
        finally:
            server.stop()
        log = server.log.read_text().split("TIMING-REPORT")[-1]  # the measured run's report
        rps = res["requests"] / (res["duration_us"] / 1e6)
        print(
            f"wrk @{args.connections}: {rps:.0f} req/s, p50 {res['p50_us'] / 1000:.3f} ms, ", end=""
        )
        print(f"non-2xx {res['status']}")
        print("| stage | count | p50 ms |\n|---|---|---|")
        for line in log.splitlines():
            if line.startswith("TIMING "):
                _, name, count, ms = line.split()
                print(f"| {name} | {count} | {ms} |")
    finally:
        upstream.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--instrumented":
        serve_instrumented(sys.argv[2:])
    else:
        main()
