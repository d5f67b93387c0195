"""Fair-share simulation: `FairScheduler` under contention, on a virtual clock.

Run by hand (not a test): ``python bench/fairshare_sim.py [--json PATH]``. See bench/README.md.

A discrete-event simulation (no sleeping, seeded) of ``--slots`` serving slots. A request of n
tokens holds a slot for ``overhead + n / rate`` seconds. Members send requests from closed-loop
clients (send, wait for the answer, think, send again; optionally only while "on"), as a
Poisson stream, or in bursts. Each pattern runs under three policies on the same arrivals:

- ``wfq``: `FairScheduler`, weights from contributions, cost = tokens (what the gateway does),
- ``wfq-req``: the same, but cost = 1 per request,
- ``wfq-bank``: ``wfq`` without the clamp on activation: an idle member keeps its old virtual
  time, so it banks credit while away (the ablation that shows why the clamp is there),
- ``fifo``: one queue for everyone, in arrival order.

Expected shares are max-min fair with weights (water-filling), computed per time slice: in each
slice a member can use at most its backlog at the start plus what it sent during the slice;
the slice's capacity (the tokens actually served in it) is divided by weight, a member that
needs less than its part keeps only what it needs, and the rest is divided again. Jain's index
is taken over served / expected tokens per member (1.0: everyone got exactly its fair share).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allmende.commons.fairshare import DEFAULT_FLOOR, FairScheduler


@dataclass
class Member:
    name: str
    contribution: int  # tokens its nodes served for others in the window (relative units)
    tokens: tuple[int, int]  # request size, uniform in [lo, hi]
    clients: int = 0  # closed loop: clients, each with one request at a time
    think_s: float = 0.2
    on_off: tuple[float, float] | None = None  # closed loop: (on s, off s), starting on
    load: float = 0.0  # Poisson: offered tokens as a fraction of the capacity
    burst: tuple[int, float] | None = None  # (requests, every s)

    def demand(self) -> str:
        if self.clients:
            text = f"{self.clients} clients"
            if self.on_off:
                text += f", on {self.on_off[0]:g} s / off {self.on_off[1]:g} s"
            return text
        if self.burst:
            return f"burst of {self.burst[0]} every {self.burst[1]:g} s"
        return f"Poisson, {self.load:.0%} of capacity"


@dataclass
class Pattern:
    name: str
    title: str
    members: list[Member]


PATTERNS = [
    Pattern(
        "a-equal",
        "three members, equal demand, no contributions",
        [Member(n, 0, (64, 512), clients=16) for n in "ABC"],
    ),
    Pattern(
        "b-contribution",
        "contributions 60/30/10 % and a non-contributor, all saturating",
        [
            Member("A", 600, (64, 512), clients=16),
            Member("B", 300, (64, 512), clients=16),
            Member("C", 100, (64, 512), clients=16),
            Member("D", 0, (64, 512), clients=16),
        ],
    ),
    Pattern(
        "c-heavy-vs-light",
        "the only contributor saturates; three light non-contributors below their share",
        [
            Member("H", 1000, (64, 512), clients=32),
            Member("L1", 0, (32, 256), load=0.02),
            Member("L2", 0, (32, 256), load=0.04),
            Member("L3", 0, (32, 256), load=0.06),
        ],
    ),
    Pattern(
        "d-on-off-burst",
        "two steady members, one on/off, one bursty; no contributions",
        [
            Member("A", 0, (64, 512), clients=16),
            Member("B", 0, (64, 512), clients=16),
            Member("C", 0, (64, 512), clients=16, on_off=(60.0, 60.0)),
            Member("D", 0, (64, 512), burst=(24, 90.0)),
        ],
    ),
    Pattern(
        "e-mixed-sizes",
        "short vs long vs mixed answers, equal weights, all saturating",
        [
            Member("short", 0, (32, 96), clients=16),
            Member("long", 0, (512, 1024), clients=16),
            Member("mixed", 0, (32, 1024), clients=16),
        ],
    ),
]
POLICIES = ("wfq", "wfq-req", "wfq-bank", "fifo")


@dataclass
class Request:
    member: int
    tokens: int
    arrived: float
    client: bool


class Fifo:
    """The baseline: one queue in arrival order (same interface as `FairScheduler`)."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, Request]] = deque()

    def push(self, member: int, item: Request) -> None:
        self._queue.append((member, item))

    def pop(self) -> tuple[int, Request] | None:
        return self._queue.popleft() if self._queue else None

    def finish(self, member: int, cost: float) -> None:
        pass


class Banking(FairScheduler["Request"]):
    """The ablation: a member returning from idle keeps its old virtual time."""

    def _activate(self, member: int) -> None:
        self._vt.setdefault(member, self.virtual_time())


@dataclass
class Config:
    slots: int = 8
    rate: float = 50.0  # tokens/s per slot
    overhead_s: float = 0.05
    duration_s: float = 1260.0
    warmup_s: float = 60.0
    slice_s: float = 30.0
    floor: float = DEFAULT_FLOOR
    seed: int = 1


@dataclass
class Trace:
    arrivals: list[tuple[int, float, int]] = field(default_factory=list)  # member, t, tokens
    served: list[tuple[int, float, float, int]] = field(default_factory=list)  # m, start, end, n
    waits: list[tuple[int, float, float]] = field(default_factory=list)  # member, start, wait


def simulate(pattern: Pattern, policy: str, cfg: Config) -> Trace:
    members = pattern.members
    ids = list(range(len(members)))
    rngs = [random.Random(f"{cfg.seed}/{pattern.name}/{m.name}") for m in members]
    sched: FairScheduler[Request] | Fifo
    if policy == "fifo":
        sched = Fifo()
    else:
        sched = Banking() if policy == "wfq-bank" else FairScheduler()
        sched.set_contributions({i: m.contribution for i, m in enumerate(members)}, ids, cfg.floor)
    events: list[tuple[float, int, str, Any]] = []
    seq = 0
    free = cfg.slots
    trace = Trace()

    def at(t: float, kind: str, data: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, data))

    def size(i: int) -> int:
        return rngs[i].randint(*members[i].tokens)

    def next_client_request(i: int, t: float, first: bool = False) -> None:
        m = members[i]
        t += rngs[i].uniform(0, 1) if first else rngs[i].expovariate(1 / m.think_s)
        if m.on_off is not None:
            on, off = m.on_off
            if t % (on + off) >= on:  # off now: wait for the next "on", plus a little jitter
                t = (t // (on + off) + 1) * (on + off) + rngs[i].uniform(0, 1)
        at(t, "arrive", Request(i, size(i), t, True))

    # Poisson members: requests/s for the offered load, in tokens, as a share of the capacity.
    poisson = {}
    for i, m in enumerate(members):
        mean = sum(m.tokens) / 2
        poisson[i] = m.load * cfg.slots / (cfg.overhead_s + mean / cfg.rate)
    for i, m in enumerate(members):
        for _ in range(m.clients):
            next_client_request(i, 0.0, first=True)
        if m.load:
            at(rngs[i].expovariate(poisson[i]), "poisson", i)
        if m.burst:
            at(m.burst[1] / 3, "burst", i)

    def arrive(req: Request, t: float) -> None:
        trace.arrivals.append((req.member, t, req.tokens))
        sched.push(req.member, req)

    while events:
        t, _, kind, data = heapq.heappop(events)
        if t > cfg.duration_s:
            if kind == "done":  # still in service at the end: counts up to the end
                trace.served.append((data[0].member, data[1], t, data[0].tokens))
            continue
        if kind == "arrive":
            arrive(data, t)
        elif kind == "poisson":
            arrive(Request(data, size(data), t, False), t)
            at(t + rngs[data].expovariate(poisson[data]), "poisson", data)
        elif kind == "burst":
            count, every = members[data].burst
            for _ in range(count):
                arrive(Request(data, size(data), t, False), t)
            at(t + every, "burst", data)
        elif kind == "done":
            req, start = data
            free += 1
            sched.finish(req.member, 1.0 if policy == "wfq-req" else float(req.tokens))
            trace.served.append((req.member, start, t, req.tokens))
            if req.client:
                next_client_request(req.member, t)
        while free and (nxt := sched.pop()) is not None:
            free -= 1
            req = nxt[1]
            trace.waits.append((req.member, t, t - req.arrived))
            at(t + cfg.overhead_s + req.tokens / cfg.rate, "done", (req, t))
    return trace


def water_fill(capacity: float, demand: list[float], weight: list[float]) -> list[float]:
    """Max-min fair allocation with weights."""
    alloc = [0.0] * len(demand)
    active = [i for i, d in enumerate(demand) if d > 0]
    while active and capacity > 1e-9:
        total = sum(weight[i] for i in active)
        share = {i: capacity * weight[i] / total for i in active}
        capped = [i for i in active if demand[i] <= share[i]]
        if not capped:
            for i in active:
                alloc[i] = share[i]
            break
        for i in capped:
            alloc[i] = demand[i]
            capacity -= demand[i]
        active = [i for i in active if i not in capped]
    return alloc


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def jain(xs: list[float]) -> float:
    """Jain's fairness index: (sum x)^2 / (n * sum x^2); 1.0 when all x are equal."""
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def analyse(pattern: Pattern, trace: Trace, cfg: Config, weight: list[float]) -> dict[str, Any]:
    n = len(pattern.members)
    slices = int(cfg.duration_s // cfg.slice_s)
    first = int(cfg.warmup_s // cfg.slice_s)
    served = [[0.0] * slices for _ in range(n)]
    arrived = [[0.0] * slices for _ in range(n)]
    for m, start, end, tokens in trace.served:
        k = int(start // cfg.slice_s)
        while k < slices and k * cfg.slice_s < end:
            lo, hi = max(start, k * cfg.slice_s), min(end, (k + 1) * cfg.slice_s)
            served[m][k] += tokens * max(0.0, hi - lo) / (end - start)
            k += 1
    for m, t, tokens in trace.arrivals:
        if int(t // cfg.slice_s) < slices:
            arrived[m][int(t // cfg.slice_s)] += tokens
    # A member's demand in a slice is its backlog at the start plus what it sent in the slice.
    # For open-loop members the backlog is the ideal system's (arrivals - expected so far); for
    # closed-loop ones, whose sending follows their service, it is the real one (requests
    # their clients have outstanding). The capacity is the tokens served in the slice.
    closed = [m.clients > 0 for m in pattern.members]
    expected = [0.0] * n
    got = [0.0] * n
    offered = [0.0] * n
    backlog = [0.0] * n
    for k in range(slices):
        demand = [backlog[m] + arrived[m][k] for m in range(n)]
        capacity = sum(served[m][k] for m in range(n))
        alloc = water_fill(capacity, demand, weight)
        for m in range(n):
            backlog[m] = max(0.0, demand[m] - (served[m][k] if closed[m] else alloc[m]))
            if k >= first:
                expected[m] += alloc[m]
                got[m] += served[m][k]
                offered[m] += arrived[m][k]
    total = sum(got)
    rows = []
    for m, member in enumerate(pattern.members):
        waits = [w for mm, t, w in trace.waits if mm == m and t >= cfg.warmup_s]
        rows.append(
            {
                "member": member.name,
                "contribution": member.contribution,
                "weight": weight[m],
                "demand": member.demand(),
                "offered_tokens": offered[m],
                "served_tokens": got[m],
                "served_share": got[m] / total,
                "expected_share": expected[m] / total,
                "served_over_expected": got[m] / expected[m] if expected[m] else None,
                "requests": len(waits),
                "wait_p50_s": percentile(waits, 0.5),
                "wait_p95_s": percentile(waits, 0.95),
            }
        )
    ratios = [got[m] / expected[m] for m in range(n) if expected[m]]
    return {"jain": jain(ratios), "served_tokens": total, "members": rows}


def run(cfg: Config) -> list[dict[str, Any]]:
    results = []
    for pattern in PATTERNS:
        contrib = {i: m.contribution for i, m in enumerate(pattern.members)}
        probe: FairScheduler[None] = FairScheduler()
        w = probe.set_contributions(contrib, contrib.keys(), cfg.floor)
        weight = [w[i] for i in range(len(pattern.members))]
        policies = {p: analyse(pattern, simulate(pattern, p, cfg), cfg, weight) for p in POLICIES}
        results.append({"pattern": pattern.name, "title": pattern.title, "policies": policies})
    return results


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def spread(policy: dict[str, Any]) -> str:
    ratios = [m["served_over_expected"] for m in policy["members"]]
    ratios = [x for x in ratios if x is not None]
    return f"{min(ratios):.3f}–{max(ratios):.3f}"


def markdown(results: list[dict[str, Any]], cfg: Config) -> str:
    out = [
        f"{cfg.slots} slots, {cfg.rate:g} tokens/s per slot + {cfg.overhead_s:g} s per request, "
        f"{cfg.duration_s:g} s simulated (first {cfg.warmup_s:g} s not counted), "
        f"expected shares per {cfg.slice_s:g} s slice, floor {cfg.floor:g}, seed {cfg.seed}.",
        "",
        "| pattern | wfq: Jain | wfq: served / expected, min–max | wfq-req: Jain "
        "| wfq-bank: Jain, min–max | fifo: Jain | fifo: min–max |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pol = r["policies"]
        out.append(
            f"| {r['pattern']} | {pol['wfq']['jain']:.4f} | {spread(pol['wfq'])} "
            f"| {pol['wfq-req']['jain']:.4f} "
            f"| {pol['wfq-bank']['jain']:.4f}, {spread(pol['wfq-bank'])} "
            f"| {pol['fifo']['jain']:.4f} | {spread(pol['fifo'])} |"
        )
    for r in results:
        wfq = r["policies"]["wfq"]
        out += [
            "",
            f"**{r['pattern']}**: {r['title']} (policy wfq, Jain {wfq['jain']:.4f})",
            "",
            "| member | contribution | weight | demand | served share | expected share "
            "| served / expected | wait p50 (s) | wait p95 (s) | fifo: wait p95 (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m, f in zip(wfq["members"], r["policies"]["fifo"]["members"], strict=True):
            out.append(
                f"| {m['member']} | {m['contribution']} | {m['weight']:.3f} | {m['demand']} "
                f"| {m['served_share']:.1%} | {m['expected_share']:.1%} "
                f"| {fmt(m['served_over_expected'], '.3f')} | {fmt(m['wait_p50_s'], '.2f')} "
                f"| {fmt(m['wait_p95_s'], '.2f')} | {fmt(f['wait_p95_s'], '.2f')} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--duration", type=float, default=1260.0, help="simulated seconds")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR)
    args = parser.parse_args(argv)
    cfg = Config(slots=args.slots, duration_s=args.duration, floor=args.floor, seed=args.seed)
    results = run(cfg)
    print(markdown(results, cfg))
    if args.json:
        args.json.write_text(json.dumps({"config": vars(cfg), "results": results}, indent=2))
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
