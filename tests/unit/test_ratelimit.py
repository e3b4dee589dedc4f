"""Rate limiting: a sliding window, then a grace of refusals, then a close."""

from __future__ import annotations

import pytest

from chatgate.transport.ratelimit import RateLimiter, SlidingWindow, Verdict

ALLOW, REFUSE, CLOSE = Verdict.ALLOW, Verdict.REFUSE, Verdict.CLOSE


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_allow_up_to_the_limit_then_refuse_for_the_grace_then_close() -> None:
    limiter = RateLimiter(limit=5, window_s=10.0, grace=2)
    verdicts = [limiter.check(0.0) for _ in range(9)]
    assert verdicts == [ALLOW] * 5 + [REFUSE] * 2 + [CLOSE] * 2


@pytest.mark.parametrize(
    ("limit", "grace"),
    [(1, 1), (3, 1), (4, 1), (8, 2), (20, 5), (100, 25)],
)
def test_default_grace_is_a_quarter_of_the_limit(limit: int, grace: int) -> None:
    limiter = RateLimiter(limit=limit, window_s=10.0)
    verdicts = [limiter.check(0.0) for _ in range(limit + grace + 1)]
    assert verdicts == [ALLOW] * limit + [REFUSE] * grace + [CLOSE]


def test_contract_defaults_20_per_10s() -> None:
    clock = Clock()
    limiter = RateLimiter(limit=20, window_s=10.0)
    verdicts = [limiter.check(clock.advance(0.01)) for _ in range(26)]
    assert verdicts == [ALLOW] * 20 + [REFUSE] * 5 + [CLOSE]


def test_window_slides() -> None:
    limiter = RateLimiter(limit=3, window_s=10.0, grace=100)
    assert [limiter.check(t) for t in (0.0, 6.0, 9.0)] == [ALLOW] * 3
    assert limiter.check(9.5) is REFUSE
    # 0.0 has left the window; 6.0 and 9.0 have not: one slot, not three.
    assert limiter.check(10.5) is ALLOW
    assert limiter.check(10.6) is REFUSE
    assert limiter.check(15.9) is REFUSE
    assert limiter.check(16.0) is ALLOW
    assert limiter.check(19.0) is ALLOW
    assert limiter.check(19.1) is REFUSE


def test_an_event_exactly_one_window_old_has_left() -> None:
    window = SlidingWindow(limit=1, window_s=10.0)
    assert window.hit(0.0) is True
    assert window.hit(9.999) is False
    assert window.hit(10.0) is True


def test_refused_frames_do_not_use_up_the_window() -> None:
    limiter = RateLimiter(limit=2, window_s=10.0, grace=1000)
    assert [limiter.check(0.0), limiter.check(0.0)] == [ALLOW, ALLOW]
    assert all(limiter.check(5.0) is REFUSE for _ in range(50))
    assert [limiter.check(10.0), limiter.check(10.0)] == [ALLOW, ALLOW]
    assert limiter.check(10.0) is REFUSE


def test_strikes_reset_after_an_allowed_frame() -> None:
    clock = Clock()
    limiter = RateLimiter(limit=2, window_s=10.0, grace=2)
    start = clock.now
    assert [limiter.check(start), limiter.check(start)] == [ALLOW, ALLOW]
    assert [limiter.check(start), limiter.check(start)] == [REFUSE, REFUSE]
    later = clock.advance(10.0)
    assert limiter.check(later) is ALLOW
    # A fresh grace: two more refusals before the close, not zero.
    assert limiter.check(later) is ALLOW
    assert [limiter.check(later) for _ in range(3)] == [REFUSE, REFUSE, CLOSE]


def test_close_stays_close_while_the_flood_goes_on() -> None:
    limiter = RateLimiter(limit=1, window_s=10.0, grace=1)
    assert [limiter.check(0.0) for _ in range(5)] == [ALLOW, REFUSE, CLOSE, CLOSE, CLOSE]


def test_steady_rate_within_the_limit_is_always_allowed() -> None:
    clock = Clock()
    limiter = RateLimiter(limit=20, window_s=10.0)
    # One frame every 0.5 s is exactly 20 per 10 s.
    assert all(limiter.check(clock.advance(0.5)) is ALLOW for _ in range(500))
