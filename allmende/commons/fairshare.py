"""Fair share by contribution: weighted fair queueing per member.

When there are more requests than free slots, each member's requests wait in their own FIFO
queue and the queues are served by weighted fair queueing. A member's weight grows with what
its nodes served for *other* members over a sliding window; a member that contributed nothing
still gets a floor share. See docs/commons.md, "Fair share by contribution".

Weights (`weights`)::

    w_m = floor + c_m / C     where C = sum of c_k over the members, if C > 0
    w_m = 1                   for every member, if C = 0 (nobody contributed: equal shares)

``c_m`` is the number of tokens member m's nodes served for other members in the window
(``ledger.contribution(engine, since=now - window)``), ``floor`` is in (0, 1], default 0.1.
Every weight lies in [floor, floor + 1], so the largest contributor gets at most
(1 + floor) / floor times (11 times at 0.1) the share of a member that contributed nothing.

Worked example, floor 0.1: over the window A's nodes served 600 000 tokens for others, B's
300 000, C's 100 000, D has no nodes. C = 1 000 000; w_A = 0.1 + 0.6 = 0.7, w_B = 0.4,
w_C = 0.2, w_D = 0.1 (sum 1.4). With all four saturating, the long-run token shares are
w_m / sum(w): A 50 %, B 28.6 %, C 14.3 %, D 7.1 %. If D asks for only 2 % of the capacity it
gets all of it, and A, B and C split the other 98 % in the ratio 7:4:2 (max-min fairness with
weights: what one member leaves unused goes to the others by weight).

Scheduling (`FairScheduler`): start-time fair queueing with the cost charged after service.
Each member m has a virtual time v_m.

- Dispatch picks, among the members with queued requests, the one with the smallest v_m
  (ties: the earliest-arrived head request), and serves its oldest request (FIFO per member).
- The cost (tokens, or 1 per request) is known only after service. At dispatch v_m advances by
  an estimate (the member's moving average cost) / w_m; `finish(m, cost)` replaces that
  estimate by cost / w_m. Requests in flight therefore count at once, so with several slots
  one member cannot take every free slot before its first request ends.
- When a member goes from idle to backlogged, v_m = max(v_m, V), where V (the system virtual
  time) is the smallest *settled* v over the backlogged members (v without the estimates of
  its requests still in flight), or the start tag of the last dispatch when nobody is
  backlogged. An idle member cannot bank credit and later take a burst; and it is not held back
  by another member's estimates that will shrink when its requests finish.

Over any interval in which a set of members stays backlogged, their served costs are
proportional to their weights, up to about one request's cost each.

`FairQueue` wraps the scheduler for asyncio: a number of slots, waiters by the scheduler's
order, a bounded queue (503 `OverloadedError` with Retry-After past it) and clean cancellation.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import OverloadedError

T = TypeVar("T")

DEFAULT_FLOOR = 0.1
_EWMA = 0.2  # weight of the newest cost in a member's moving-average cost estimate


def weights(
    contributions: Mapping[int, int], members: Iterable[int], floor: float = DEFAULT_FLOOR
) -> dict[int, float]:
    """Each member's weight: ``floor + c_m / C``, or 1.0 for all when ``C == 0``.

    ``contributions`` maps member id to tokens served for others in the window (members absent
    from it contributed 0); only the ids in ``members`` count, and only they get a weight.
    """
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    contrib = {m: contributions.get(m, 0) for m in members}
    if any(c < 0 for c in contrib.values()):
        raise ValueError("contributions must not be negative")
    total = sum(contrib.values())
    if total == 0:
        return {m: 1.0 for m in contrib}
    return {m: floor + c / total for m, c in contrib.items()}


def _check_weight(weight: float) -> float:
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"a weight must be a positive number, got {weight}")
    return float(weight)


class QueueFullError(Exception):
    """The queue holds ``max_queue`` requests and no other member is further over its share."""


class FairScheduler(Generic[T]):
    """Per-member FIFO queues served by weighted fair queueing. Pure: no clock, no I/O.

    ``push`` queues an item, ``pop`` dispatches the next one, ``finish`` charges its cost when
    it is done, ``start`` charges a dispatch that never queued (a free slot, nobody waiting).
    Every ``pop``/``start`` must be followed by exactly one ``finish`` for that member.
    Members without a weight of their own get ``default_weight``.
    """

    def __init__(
        self,
        max_queue: int | None = None,
        *,
        default_weight: float = 1.0,
        initial_cost: float = 1.0,
    ) -> None:
        if max_queue is not None and max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.max_queue = max_queue
        self._default = _check_weight(default_weight)
        self._weights: dict[int, float] = {}
        self._queues: dict[int, deque[tuple[int, T]]] = {}  # backlogged members only
        self._vt: dict[int, float] = {}
        self._charges: dict[int, deque[float]] = {}  # estimates charged for requests in flight
        self._estimate: dict[int, float] = {}
        self._mean_cost = float(initial_cost)
        self._seq = 0
        self._len = 0
        self._last_start = 0.0

    # -- weights -----------------------------------------------------------------------------

    def weight(self, member: int) -> float:
        return self._weights.get(member, self._default)

    def set_weights(self, weights: Mapping[int, float], default: float | None = None) -> None:
        """Replace all weights; ``default`` (if given) becomes the weight of unlisted members."""
        checked = {m: _check_weight(w) for m, w in weights.items()}
        if default is not None:
            self._default = _check_weight(default)
        self._weights = checked

    def set_contributions(
        self, contributions: Mapping[int, int], members: Iterable[int], floor: float = DEFAULT_FLOOR
    ) -> dict[int, float]:
        """`set_weights` from contributions; an unlisted member gets a non-contributor's weight."""
        new = weights(contributions, members, floor)
        default = floor if any(contributions.get(m, 0) for m in new) else 1.0
        self.set_weights(new, default)
        return new

    # -- state -------------------------------------------------------------------------------

    def queued(self, member: int | None = None) -> int:
        if member is None:
            return self._len
        return len(self._queues.get(member, ()))

    def queued_by_member(self) -> dict[int, int]:
        return {m: len(q) for m, q in self._queues.items()}

    def in_flight(self, member: int) -> int:
        """Dispatches of ``member`` not finished yet."""
        return len(self._charges.get(member, ()))

    def vtime(self, member: int) -> float:
        """Member's virtual time (what it has been charged, in cost / weight)."""
        return self._vt.get(member, 0.0)

    def virtual_time(self) -> float:
        """System virtual time: min settled v over backlogged members, else the last start tag.

        Settled means without the estimates still charged for requests in flight: a member
        whose requests turn out cheaper than estimated drops back when they finish, and a
        member that becomes backlogged must not be clamped to the inflated value meanwhile
        (it would then wait behind everything that member sends until its own estimates
        settle)."""
        if self._queues:
            return min(self._settled(m) for m in self._queues)
        return self._last_start

    def _settled(self, member: int) -> float:
        return self._vt[member] - sum(self._charges.get(member, ()))

    def __len__(self) -> int:
        return self._len

    # -- operations --------------------------------------------------------------------------

    def push(self, member: int, item: T) -> tuple[int, T] | None:
        """Queue ``item`` for ``member``.

        When the queue is full, the newest request of the member furthest over its share
        (queued / weight) is pushed out and returned as ``(member, item)``, provided that member
        is further over than ``member`` would be; otherwise `QueueFullError` is raised. So a
        heavy user filling the queue cannot lock out a light one.
        """
        evicted = None
        if self.max_queue is not None and self._len >= self.max_queue:
            evicted = self._push_out(member)
        queue = self._queues.get(member)
        if queue is None:
            self._activate(member)
            queue = self._queues[member] = deque()
        self._seq += 1
        queue.append((self._seq, item))
        self._len += 1
        return evicted

    def pop(self) -> tuple[int, T] | None:
        """Dispatch the next request: ``(member, item)``, or None when nothing waits."""
        if not self._queues:
            return None
        member = min(self._queues, key=lambda m: (self._vt[m], self._queues[m][0][0]))
        queue = self._queues[member]
        _, item = queue.popleft()
        self._len -= 1
        if not queue:
            del self._queues[member]
        self._dispatch(member)
        return member, item

    def start(self, member: int) -> None:
        """Charge a dispatch that did not wait (a slot was free and nobody queued)."""
        if member not in self._queues:
            self._activate(member)
        self._dispatch(member)

    def finish(self, member: int, cost: float) -> None:
        """A dispatched request of ``member`` is done; charge its actual ``cost`` (>= 0)."""
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"cost must be a number >= 0, got {cost}")
        v = self._vt.get(member, self.virtual_time())
        charges = self._charges.get(member)
        if charges:
            v -= charges.popleft()
            if not charges:
                del self._charges[member]
        self._vt[member] = v + cost / self.weight(member)
        estimate = self._estimate.get(member, self._mean_cost)
        self._estimate[member] = estimate + _EWMA * (cost - estimate)
        self._mean_cost += _EWMA * (cost - self._mean_cost)

    def remove(self, member: int, item: T) -> bool:
        """Take a waiting ``item`` (compared by identity) out of the queue; False if not there."""
        queue = self._queues.get(member)
        if queue is None:
            return False
        for i, (_, queued) in enumerate(queue):
            if queued is item:
                del queue[i]
                self._len -= 1
                if not queue:
                    del self._queues[member]
                return True
        return False

    def drain(self) -> list[tuple[int, T]]:
        """Take every waiting item out (oldest first per member), charging nobody."""
        items = [(m, item) for m, queue in self._queues.items() for _, item in queue]
        self._queues.clear()
        self._len = 0
        return items

    def _activate(self, member: int) -> None:
        now = self.virtual_time()
        self._vt[member] = max(self._vt.get(member, now), now)

    def _dispatch(self, member: int) -> None:
        v = self._vt[member]
        self._last_start = max(self._last_start, self._settled(member))
        charge = self._estimate.get(member, self._mean_cost) / self.weight(member)
        self._vt[member] = v + charge
        self._charges.setdefault(member, deque()).append(charge)

    def _push_out(self, member: int) -> tuple[int, T]:
        mine = (self.queued(member) + 1) / self.weight(member)
        candidates = [
            (len(q) / self.weight(m), len(q), q[-1][0], m)
            for m, q in self._queues.items()
            if m != member
        ]
        if not candidates or max(candidates)[0] <= mine:
            raise QueueFullError(f"the queue is full ({self._len} requests waiting)")
        victim = max(candidates)[3]
        queue = self._queues[victim]
        _, item = queue.pop()
        self._len -= 1
        if not queue:
            del self._queues[victim]
        return victim, item


@dataclass(eq=False)
class Ticket:
    """One held slot. Set ``cost`` (tokens served) before it is released; default 1."""

    member_id: int
    cost: float = 1.0
    waited_s: float = 0.0
    _released: bool = field(default=False, repr=False)


class FairQueue:
    """``capacity`` slots shared by members through a `FairScheduler`; for one event loop.

    ``async with queue.slot(member_id) as ticket: ...; ticket.cost = tokens`` holds a slot for
    the block. ``acquire``/``release`` are the same in two calls.
    """

    def __init__(
        self,
        capacity: int,
        max_queue: int,
        retry_after: int,
        *,
        default_weight: float = 1.0,
        initial_cost: float = 1.0,
    ) -> None:
        if capacity < 0 or max_queue < 0:
            raise ValueError("capacity and max_queue must be >= 0")
        self.retry_after = retry_after
        self._capacity = capacity
        self._in_use = 0
        self._sched: FairScheduler[asyncio.Future[Ticket]] = FairScheduler(
            max_queue, default_weight=default_weight, initial_cost=initial_cost
        )

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def max_queue(self) -> int:
        return self._sched.max_queue or 0

    def queued(self, member: int | None = None) -> int:
        return self._sched.queued(member)

    def queued_by_member(self) -> dict[int, int]:
        return self._sched.queued_by_member()

    def weight(self, member: int) -> float:
        return self._sched.weight(member)

    def set_weights(self, weights: Mapping[int, float], default: float | None = None) -> None:
        self._sched.set_weights(weights, default)

    def set_contributions(
        self, contributions: Mapping[int, int], members: Iterable[int], floor: float = DEFAULT_FLOOR
    ) -> dict[int, float]:
        return self._sched.set_contributions(contributions, members, floor)

    def set_capacity(self, capacity: int) -> None:
        """Nodes came or went. Fewer slots take effect as held ones are released."""
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        self._grant()

    async def acquire(self, member_id: int) -> Ticket:
        """A slot for ``member_id``: at once if one is free and nobody waits, else in turn.

        Raises `OverloadedError` (503, Retry-After) when the queue is full, also later to a
        waiter pushed out by a member further under its share.
        """
        if self._in_use < self._capacity and not self._sched.queued():
            self._sched.start(member_id)
            self._in_use += 1
            return Ticket(member_id)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Ticket] = loop.create_future()
        try:
            evicted = self._sched.push(member_id, waiter)
        except QueueFullError:
            raise self._overloaded() from None
        if evicted is not None and not evicted[1].done():
            evicted[1].set_exception(self._overloaded())
        started = loop.time()
        try:
            ticket = await waiter
        except asyncio.CancelledError:
            if not self._sched.remove(member_id, waiter) and self._granted(waiter):
                self.release(waiter.result(), cost=0.0)  # granted as we were cancelled
            raise
        ticket.waited_s = loop.time() - started
        return ticket

    def release(self, ticket: Ticket, cost: float | None = None) -> None:
        """Free the slot, charge ``cost`` (default ``ticket.cost``), wake the next waiter."""
        if ticket._released:
            return
        ticket._released = True
        self._in_use -= 1
        self._sched.finish(ticket.member_id, ticket.cost if cost is None else cost)
        self._grant()

    def fail_waiting(self, error: Callable[[], Exception]) -> int:
        """Fail every waiting request with ``error()`` (no capacity is coming: the nodes of a
        model are all down), so none of them hangs; returns how many."""
        failed = 0
        for _, waiter in self._sched.drain():
            if not waiter.done():
                waiter.set_exception(error())
                failed += 1
        return failed

    @asynccontextmanager
    async def slot(self, member_id: int) -> AsyncIterator[Ticket]:
        """Hold a slot for the block; set ``ticket.cost`` to the tokens served."""
        ticket = await self.acquire(member_id)
        try:
            yield ticket
        finally:
            self.release(ticket)

    def _grant(self) -> None:
        while self._in_use < self._capacity:
            nxt = self._sched.pop()
            if nxt is None:
                return
            member, waiter = nxt
            if waiter.done():  # cancelled, its task has not run its handler yet
                self._sched.finish(member, 0.0)
                continue
            self._in_use += 1
            waiter.set_result(Ticket(member))

    @staticmethod
    def _granted(waiter: asyncio.Future[Ticket]) -> bool:
        return waiter.done() and not waiter.cancelled() and waiter.exception() is None

    def _overloaded(self) -> OverloadedError:
        return OverloadedError(
            f"The server is overloaded ({self._sched.queued()} requests waiting); "
            f"retry after {self.retry_after} s.",
            retry_after=self.retry_after,
        )


__all__ = [
    "DEFAULT_FLOOR",
    "FairQueue",
    "FairScheduler",
    "QueueFullError",
    "Ticket",
    "weights",
]
