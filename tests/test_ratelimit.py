"""
Tests for L{presenced.ratelimit}: log lines others can cause, rate-limited.
"""

from twisted.internet import task
from twisted.logger import Logger, LogLevel, capturedLogs, formatEvent

from presenced.ratelimit import RateLimitedLog


def limited():
    clock = task.Clock()
    return clock, RateLimitedLog(Logger(), clock)


def test_repeatsWithinAMinuteAreCountedNotLogged():
    """
    The first line of a kind is logged; repeats within a minute are not,
    and the next one logged after that says how many were left out.
    """
    clock, log = limited()
    with capturedLogs() as events:
        log.warn("Refusing {user}", user="a@example.test")
        clock.advance(30)
        log.warn("Refusing {user}", user="b@example.test")
        log.warn("Refusing {user}", user="c@example.test")
        clock.advance(30)
        log.warn("Refusing {user}", user="d@example.test")
        clock.advance(60)
        log.warn("Refusing {user}", user="e@example.test")
    assert [formatEvent(e) for e in events] == [
        "Refusing a@example.test",
        "Refusing d@example.test (2 more like this not logged since the last one)",
        "Refusing e@example.test",
    ]
    assert [(e["log_level"], e["suppressed"]) for e in events] == [
        (LogLevel.warn, 0), (LogLevel.warn, 2), (LogLevel.warn, 0)]


def test_eachKindLimitedOnItsOwn():
    """
    Lines of different kinds (format strings) do not hold each other back.
    """
    clock, log = limited()
    with capturedLogs() as events:
        log.info("One kind")
        log.warn("Another kind")
        log.info("One kind")
    assert [formatEvent(e) for e in events] == ["One kind", "Another kind"]
    assert [e["log_level"] for e in events] == [LogLevel.info, LogLevel.warn]
