"""The dashboard's login throttle and session revocation (issue 28, item 3), on a clock of the test's."""

from __future__ import annotations

from footprint.dashboard.guard import LoginThrottle, Revoked


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_count_when_they_start_so_parallel_ones_are_refused_too() -> None:
    t = LoginThrottle(per_client=5, clock=Clock())
    answers = [t.admit("198.51.100.1") for _ in range(30)]  # 30 at once: none finished (none succeeded)
    assert answers[:5] == [0.0] * 5
    assert all(a > 0 for a in answers[5:])
    assert t.admit("198.51.100.2") == 0.0  # another address is not locked out


def test_the_lockout_doubles_and_a_success_clears_it() -> None:
    clock = Clock()
    t = LoginThrottle(per_client=2, base_lock=30, max_lock=100, window=300, clock=clock)
    locks = []
    for _ in range(4):
        assert t.admit("a") == 0.0 and t.admit("a") == 0.0
        locks.append(t.admit("a"))
        clock.now += locks[-1] + 0.1
    assert locks == [30, 60, 100, 100]  # doubling, capped
    t.succeeded("a")
    assert [t.admit("a") for _ in range(3)] == [0.0, 0.0, 30]  # back to the first step


def test_many_addresses_together_never_pass_the_overall_limit() -> None:
    clock = Clock()
    t = LoginThrottle(per_client=5, overall=20, window=300, clock=clock)
    admitted = 0
    for second in range(900):  # a new address every second for 15 minutes
        admitted += t.admit(f"10.{second // 250}.{second % 250}.1") == 0.0
        clock.now += 1
    assert admitted <= 20 * 3  # at most `overall` per window, however many addresses
    assert t.admit("192.0.2.1") > 0  # a newcomer waits too while the window is full


def test_an_ipv6_client_counts_by_its_64() -> None:
    t = LoginThrottle(per_client=3, clock=Clock())
    answers = [t.admit(f"2001:db8:1:2::{i:x}") for i in range(1, 10)]  # nine addresses of one /64
    assert answers[:3] == [0.0] * 3 and all(a > 0 for a in answers[3:])
    assert t.admit("2001:db8:1:3::1") == 0.0  # another /64


def test_old_attempts_leave_the_window() -> None:
    clock = Clock()
    t = LoginThrottle(per_client=2, window=60, clock=clock)
    assert t.admit("a") == 0.0 and t.admit("a") == 0.0
    clock.now += 61
    assert t.admit("a") == 0.0


def test_a_revoked_session_stays_revoked_until_it_would_have_expired() -> None:
    clock = Clock()
    r = Revoked(clock=clock)
    r.add("sid-1", 3600)
    assert "sid-1" in r and "sid-2" not in r
    clock.now += 3601
    assert "sid-1" not in r
