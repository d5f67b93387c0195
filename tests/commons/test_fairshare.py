"""Fair share by contribution: the weight formula, the scheduler and the asyncio queue."""

from __future__ import annotations

import asyncio
from collections import Counter, deque

import pytest

from allmende.commons.fairshare import (
    FairQueue,
    FairScheduler,
    QueueFullError,
    Ticket,
    weights,
)
from allmende.errors import OverloadedError

# -- weights -------------------------------------------------------------------------------


def test_weights_worked_example() -> None:
    w = weights({1: 600_000, 2: 300_000, 3: 100_000}, [1, 2, 3, 4], floor=0.1)
    assert w == pytest.approx({1: 0.7, 2: 0.4, 3: 0.2, 4: 0.1})
    total = sum(w.values())
    assert [w[m] / total for m in (1, 2, 3, 4)] == pytest.approx([0.5, 2 / 7, 1 / 7, 1 / 14])


def test_no_contribution_means_equal_weights() -> None:
    assert weights({}, [1, 2, 3]) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert weights({1: 0, 2: 0}, [1, 2], floor=0.5) == {1: 1.0, 2: 1.0}
    assert weights({}, []) == {}


def test_non_contributor_gets_the_floor() -> None:
    assert weights({1: 10}, [1, 2], floor=0.25) == {1: 1.25, 2: 0.25}
    assert weights({1: 10}, [1, 2], floor=1.0) == {1: 2.0, 2: 1.0}


def test_weights_are_proportional_to_contribution_above_the_floor() -> None:
    w = weights({1: 30, 2: 10, 3: 5}, [1, 2, 3], floor=0.1)
    assert (w[1] - 0.1) / (w[2] - 0.1) == pytest.approx(3.0)
    assert (w[2] - 0.1) / (w[3] - 0.1) == pytest.approx(2.0)
    assert sum(w.values()) == pytest.approx(1.0 + 3 * 0.1)
    # Only relative contribution matters.
    assert weights({1: 300, 2: 100, 3: 50}, [1, 2, 3], floor=0.1) == pytest.approx(w)


def test_contributions_of_non_members_are_ignored() -> None:
    assert weights({1: 10, 9: 1000}, [1, 2]) == pytest.approx({1: 1.1, 2: 0.1})


@pytest.mark.parametrize("floor", [0.0, -0.1, 1.01, float("nan")])
def test_floor_must_be_in_range(floor: float) -> None:
    with pytest.raises(ValueError, match="floor"):
        weights({1: 1}, [1], floor=floor)


def test_negative_contribution_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        weights({1: -1}, [1])


# -- FairScheduler -------------------------------------------------------------------------


def saturate(
    sched: FairScheduler[int], dispatches: int, slots: int, cost: dict[int, float]
) -> list[int]:
    """Keep every member in ``cost`` backlogged; serve ``dispatches`` requests on ``slots``."""
    for m in cost:
        for i in range(dispatches):
            sched.push(m, i)
    order: list[int] = []
    running: deque[int] = deque()
    while len(order) < dispatches:
        while len(running) < slots:
            nxt = sched.pop()
            assert nxt is not None
            running.append(nxt[0])
            order.append(nxt[0])
        done = running.popleft()
        sched.finish(done, cost[done])
    return order[:dispatches]


@pytest.mark.parametrize("slots", [1, 4])
def test_weight_two_gets_two_thirds_under_saturation(slots: int) -> None:
    sched: FairScheduler[int] = FairScheduler()
    sched.set_weights({1: 2.0, 2: 1.0})
    order = saturate(sched, 300, slots, {1: 1.0, 2: 1.0})
    assert abs(order.count(1) - 200) <= 3
    # Not only in the long run: every window of 30 dispatches is close to 2:1.
    for start in range(0, 300, 30):
        assert 18 <= order[start : start + 30].count(1) <= 22


def test_cost_is_charged_in_tokens() -> None:
    sched: FairScheduler[int] = FairScheduler()
    order = saturate(sched, 330, 2, {1: 100.0, 2: 10.0})
    counts = Counter(order)
    # Equal weights, so equal tokens: member 2 gets about 10 requests per request of member 1.
    assert counts[1] * 100 == pytest.approx(counts[2] * 10, rel=0.1)


def test_idle_member_does_not_bank_credit() -> None:
    sched: FairScheduler[int] = FairScheduler()
    sched.set_weights({1: 1.0, 2: 1.0, 3: 1.0})
    # Member 3 is served a little, then idles while 1 and 2 are served 200 requests.
    sched.push(3, 0)
    popped = sched.pop()
    assert popped == (3, 0)
    sched.finish(3, 1.0)
    saturate(sched, 200, 1, {1: 1.0, 2: 1.0})
    for i in range(50):
        sched.push(3, i)
    order = []
    for _ in range(30):
        popped = sched.pop()
        assert popped is not None
        order.append(popped[0])
        sched.finish(popped[0], 1.0)
    # A third, not a burst of ~100 requests from the time it was away.
    assert 9 <= order.count(3) <= 11
    assert order[:6].count(3) <= 3


def test_new_member_starts_at_the_current_virtual_time() -> None:
    sched: FairScheduler[int] = FairScheduler()
    saturate(sched, 100, 1, {1: 1.0})
    sched.push(2, 0)
    assert sched.vtime(2) == pytest.approx(sched.virtual_time())
    assert sched.vtime(2) > 50  # neither credited nor penalised for not having been there


def test_in_flight_requests_count_before_they_finish() -> None:
    sched: FairScheduler[int] = FairScheduler()
    for i in range(4):
        sched.push(1, i)
        sched.push(2, i)
    # Four free slots: they go 2 and 2, not 4 to whoever was first.
    firsts = [sched.pop() for _ in range(4)]
    assert Counter(p[0] for p in firsts if p is not None) == {1: 2, 2: 2}


def test_finish_replaces_the_estimate_with_the_actual_cost() -> None:
    sched: FairScheduler[int] = FairScheduler()
    sched.set_weights({1: 0.5})
    sched.push(1, 0)
    before = sched.vtime(1)
    sched.pop()
    assert sched.in_flight(1) == 1
    sched.finish(1, 10.0)
    assert sched.in_flight(1) == 0
    assert sched.vtime(1) == pytest.approx(before + 10.0 / 0.5)
    with pytest.raises(ValueError):
        sched.finish(1, -1.0)


def test_fifo_within_a_member() -> None:
    sched: FairScheduler[str] = FairScheduler()
    sched.set_weights({1: 3.0, 2: 1.0})
    for i in range(10):
        sched.push(1, f"a{i}")
        sched.push(2, f"b{i}")
    got: dict[int, list[str]] = {1: [], 2: []}
    while (popped := sched.pop()) is not None:
        got[popped[0]].append(popped[1])
        sched.finish(popped[0], 1.0)
    assert got[1] == [f"a{i}" for i in range(10)]
    assert got[2] == [f"b{i}" for i in range(10)]


def test_ties_go_to_the_earliest_arrival() -> None:
    sched: FairScheduler[str] = FairScheduler()
    sched.push(2, "first")
    sched.push(1, "second")
    assert sched.pop() == (2, "first")


def test_remove() -> None:
    sched: FairScheduler[object] = FairScheduler()
    a, b, c = object(), object(), object()
    for item in (a, b, c):
        sched.push(1, item)
    assert sched.remove(1, b)
    assert not sched.remove(1, b)
    assert not sched.remove(2, a)
    assert sched.queued() == 2 and sched.queued(1) == 2
    assert sched.pop() == (1, a)
    assert sched.remove(1, c)
    assert sched.queued() == 0 and sched.queued_by_member() == {}
    assert sched.pop() is None


def test_bounded_queue_pushes_out_the_member_furthest_over_its_share() -> None:
    sched: FairScheduler[str] = FairScheduler(max_queue=3)
    for i in range(3):
        sched.push(1, f"a{i}")
    with pytest.raises(QueueFullError, match="full"):
        sched.push(1, "a3")
    # A light member still gets in: member 1's newest request makes room.
    assert sched.push(2, "b0") == (1, "a2")
    assert sched.queued_by_member() == {1: 2, 2: 1}
    # Now both would be at 2 queued: nobody is further over its share than member 2 would be.
    with pytest.raises(QueueFullError):
        sched.push(2, "b1")
    # Weights count: with weight 4, member 2 may hold up to 4 times member 1's queue.
    sched.set_weights({2: 4.0})
    assert sched.push(2, "b1") == (1, "a1")
    assert sched.queued() == 3


def test_zero_queue_refuses_every_push() -> None:
    sched: FairScheduler[int] = FairScheduler(max_queue=0)
    with pytest.raises(QueueFullError):
        sched.push(1, 0)


def test_weights_and_defaults() -> None:
    sched: FairScheduler[int] = FairScheduler(default_weight=0.5)
    assert sched.weight(7) == 0.5
    sched.set_weights({1: 2.0}, default=0.25)
    assert sched.weight(1) == 2.0 and sched.weight(7) == 0.25
    sched.set_weights({})
    assert sched.weight(1) == 0.25
    with pytest.raises(ValueError):
        sched.set_weights({1: 0.0})
    assert sched.set_contributions({1: 30, 2: 10}, [1, 2, 3]) == pytest.approx(
        {1: 0.85, 2: 0.35, 3: 0.1}
    )
    assert sched.weight(99) == 0.1  # an unlisted member counts as a non-contributor
    sched.set_contributions({}, [1, 2])
    assert sched.weight(1) == sched.weight(99) == 1.0


# -- FairQueue -----------------------------------------------------------------------------


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_capacity_is_respected() -> None:
    queue = FairQueue(capacity=2, max_queue=100, retry_after=3)
    running = peak = 0
    go = asyncio.Event()

    async def client(member: int) -> None:
        nonlocal running, peak
        async with queue.slot(member) as ticket:
            running += 1
            peak = max(peak, running)
            await go.wait()
            await asyncio.sleep(0)
            running -= 1
            ticket.cost = 5

    tasks = [asyncio.create_task(client(i % 3)) for i in range(10)]
    await settle()
    assert queue.in_use == 2 and queue.queued() == 8
    assert sum(queue.queued_by_member().values()) == 8
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert peak == 2
    assert queue.in_use == 0 and queue.queued() == 0


async def test_order_follows_weights() -> None:
    queue = FairQueue(capacity=1, max_queue=100, retry_after=1)
    queue.set_weights({1: 2.0, 2: 1.0})
    holder = await queue.acquire(3)
    order: list[int] = []

    async def client(member: int) -> None:
        async with queue.slot(member):
            order.append(member)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(client(1)) for _ in range(6)]
    tasks += [asyncio.create_task(client(2)) for _ in range(6)]
    await settle()
    assert queue.queued_by_member() == {1: 6, 2: 6}
    queue.release(holder)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order[:9].count(1) == 6
    assert order[9:] == [2, 2, 2]


async def test_cancelled_waiter_leaves_no_trace() -> None:
    queue = FairQueue(capacity=1, max_queue=10, retry_after=1)
    holder = await queue.acquire(1)
    waiter = asyncio.create_task(queue.acquire(2))
    await settle()
    assert queue.queued(2) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.queued() == 0
    queue.release(holder)
    assert queue.in_use == 0
    ticket = await asyncio.wait_for(queue.acquire(3), 1)  # immediate: no slot leaked
    assert queue.in_use == 1
    queue.release(ticket)
    queue.release(ticket)  # a second release is a no-op
    assert queue.in_use == 0


async def test_waiter_cancelled_just_as_it_is_granted_gives_the_slot_back() -> None:
    queue = FairQueue(capacity=1, max_queue=10, retry_after=1)
    holder = await queue.acquire(1)
    waiter = asyncio.create_task(queue.acquire(2))
    other = asyncio.create_task(queue.acquire(3))
    await settle()
    queue.release(holder)  # grants the slot to the waiter ...
    waiter.cancel()  # ... which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiter
    ticket = await asyncio.wait_for(other, 1)  # the slot went on to the next waiter
    assert ticket.member_id == 3 and queue.in_use == 1
    queue.release(ticket)
    assert queue.in_use == 0


async def test_cancelled_before_the_grant_is_skipped() -> None:
    queue = FairQueue(capacity=1, max_queue=10, retry_after=1)
    holder = await queue.acquire(1)
    waiter = asyncio.create_task(queue.acquire(2))
    other = asyncio.create_task(queue.acquire(3))
    await settle()
    waiter.cancel()  # its future is cancelled now, its handler runs later
    queue.release(holder)
    ticket = await asyncio.wait_for(other, 1)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ticket.member_id == 3 and queue.in_use == 1 and queue.queued() == 0


async def test_set_capacity_wakes_waiters_and_shrinks_on_release() -> None:
    queue = FairQueue(capacity=0, max_queue=10, retry_after=1)
    tasks = [asyncio.create_task(queue.acquire(m)) for m in (1, 2, 3)]
    await settle()
    assert not any(t.done() for t in tasks) and queue.queued() == 3
    queue.set_capacity(2)
    await settle()
    done = [t for t in tasks if t.done()]
    assert len(done) == 2 and queue.in_use == 2 and queue.queued() == 1
    queue.set_capacity(1)
    queue.release(done[0].result())
    await settle()
    assert queue.in_use == 1 and queue.queued() == 1  # still one too many in use before
    queue.release(done[1].result())
    last = await asyncio.wait_for(next(t for t in tasks if t not in done), 1)
    assert isinstance(last, Ticket) and queue.in_use == 1
    queue.release(last)


async def test_full_queue_raises_overloaded() -> None:
    queue = FairQueue(capacity=1, max_queue=2, retry_after=7)
    holder = await queue.acquire(1)
    waiters = [asyncio.create_task(queue.acquire(1)) for _ in range(2)]
    await settle()
    with pytest.raises(OverloadedError) as refused:
        await queue.acquire(1)
    assert refused.value.status == 503 and refused.value.retry_after == 7
    assert refused.value.code == "server_overloaded"
    # Another member pushes member 1's newest waiter out; that waiter gets the 503.
    newcomer = asyncio.create_task(queue.acquire(2))
    await settle()
    with pytest.raises(OverloadedError):
        await waiters[1]
    assert queue.queued_by_member() == {1: 1, 2: 1}
    # Now both hold one place: neither can push the other out.
    with pytest.raises(OverloadedError):
        await queue.acquire(2)
    queue.release(holder)
    # Member 1 has just been served (the holder), member 2 not yet: member 2 goes first.
    first = await asyncio.wait_for(newcomer, 1)
    assert first.member_id == 2
    queue.release(first)
    second = await asyncio.wait_for(waiters[0], 1)
    assert second.member_id == 1
    queue.release(second)
    assert queue.in_use == 0 and queue.queued() == 0


async def test_zero_queue_refuses_when_busy() -> None:
    queue = FairQueue(capacity=1, max_queue=0, retry_after=2)
    async with queue.slot(1):
        with pytest.raises(OverloadedError):
            await queue.acquire(2)
    assert queue.in_use == 0


async def test_slot_releases_on_error_and_charges_the_ticket_cost() -> None:
    queue = FairQueue(capacity=1, max_queue=10, retry_after=1)
    holder = await queue.acquire(3)
    order: list[int] = []

    async def client(member: int, cost: float, fail: bool) -> None:
        async with queue.slot(member) as ticket:
            order.append(member)
            ticket.cost = cost
            if fail:
                raise RuntimeError("boom")

    tasks = [
        asyncio.create_task(client(1, 40, True)),
        asyncio.create_task(client(2, 10, False)),
        asyncio.create_task(client(1, 1, False)),
        asyncio.create_task(client(2, 1, False)),
    ]
    await settle()
    queue.release(holder)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert isinstance(results[0], RuntimeError)
    assert queue.in_use == 0
    # Member 1 was charged 40 tokens (the body failed after setting the cost), member 2 only
    # 10, so member 2 goes again before member 1. With equal costs it would be 1, 2, 1, 2.
    assert order == [1, 2, 2, 1]


async def test_fail_waiting_ends_every_waiter_and_keeps_the_slots_right() -> None:
    queue = FairQueue(capacity=1, max_queue=8, retry_after=3)
    held = await queue.acquire(1)
    waiters = [asyncio.create_task(queue.acquire(m)) for m in (1, 2, 2)]
    await asyncio.sleep(0)
    assert queue.queued() == 3
    queue.set_capacity(0)  # the model's nodes went down
    assert queue.fail_waiting(lambda: OverloadedError("no node", retry_after=3)) == 3
    for task in waiters:
        with pytest.raises(OverloadedError, match="no node"):
            await task
    assert queue.queued() == 0 and queue.in_use == 1
    queue.release(held)
    assert queue.in_use == 0
    queue.set_capacity(1)  # a node is back: the queue works as before
    ticket = await asyncio.wait_for(queue.acquire(2), 1)
    queue.release(ticket)
