"""Per-key rate limits shared through the database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from allmende.commons import keys, limits, members
from allmende.errors import RateLimitError

T0 = datetime(2025, 3, 1, 12, 0, 15, tzinfo=UTC)  # 15 s into a minute


def make_key(engine: Engine, lim: keys.Limits) -> keys.Principal:
    members.add_member(engine, "acme")
    return keys.authenticate(engine, keys.create_key(engine, "acme", limits=lim).secret)


def test_rpm_exceeded_gives_429_with_retry_after(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(rpm=3))
    for _ in range(3):
        limits.admit_principal(engine, p, at=T0)
    with pytest.raises(RateLimitError) as exc:
        limits.admit_principal(engine, p, at=T0 + timedelta(seconds=5))
    assert exc.value.status == 429
    assert exc.value.retry_after == 40  # the minute window ends at 12:01:00
    assert "requests per minute" in exc.value.message
    # A refused request is not counted, and the next minute starts afresh.
    limits.admit_principal(engine, p, at=T0 + timedelta(seconds=45))  # 12:01:00
    for _ in range(2):
        limits.admit_principal(engine, p, at=T0 + timedelta(seconds=50))
    with pytest.raises(RateLimitError):
        limits.admit_principal(engine, p, at=T0 + timedelta(seconds=50))


def test_refused_requests_do_not_count(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(rpm=1))
    limits.admit_principal(engine, p, at=T0)
    for _ in range(3):
        with pytest.raises(RateLimitError):
            limits.admit_principal(engine, p, at=T0)
    (state,) = limits.admit(engine, p.key_id, keys.Limits(rpm=100), at=T0)
    assert state.requests == 2  # the first admitted one, and this one


def test_tpm_is_charged_after_the_request(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(tpm=100))
    limits.admit_principal(engine, p, at=T0)
    limits.charge_principal(engine, p, 60, at=T0)
    limits.admit_principal(engine, p, at=T0)  # 60 < 100: admitted
    limits.charge_principal(engine, p, 60, at=T0)  # 120: this one overshoots
    with pytest.raises(RateLimitError) as exc:
        limits.admit_principal(engine, p, at=T0 + timedelta(seconds=1))
    assert "tokens per minute" in exc.value.message
    assert exc.value.retry_after == 44
    limits.admit_principal(engine, p, at=T0 + timedelta(minutes=1))


def test_tpd(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(tpd=1000))
    limits.admit_principal(engine, p, at=T0)
    limits.charge_principal(engine, p, 1000, at=T0)
    with pytest.raises(RateLimitError) as exc:
        limits.admit_principal(engine, p, at=T0)
    assert "tokens per day" in exc.value.message
    assert exc.value.retry_after == 12 * 3600 - 15
    limits.admit_principal(engine, p, at=T0 + timedelta(hours=12))


def test_unlimited_keys_touch_nothing(engine: Engine) -> None:
    p = make_key(engine, keys.Limits())
    assert limits.admit(engine, p.key_id, p.limits, at=T0) == []
    assert limits.charge(engine, p.key_id, p.limits, 10, at=T0) == []


def test_a_clock_behind_does_not_reset_the_window(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(rpm=2))
    limits.admit_principal(engine, p, at=T0 + timedelta(minutes=1))
    limits.admit_principal(engine, p, at=T0)  # another replica, a minute behind
    with pytest.raises(RateLimitError):
        limits.admit_principal(engine, p, at=T0 + timedelta(minutes=1))


def test_concurrent_admits_never_exceed_the_limit(engine: Engine) -> None:
    p = make_key(engine, keys.Limits(rpm=20))

    def attempt(_: int) -> bool:
        try:
            limits.admit_principal(engine, p, at=T0)
        except RateLimitError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(50)))
    assert sum(results) == 20
