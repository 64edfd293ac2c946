"""
Tests for L{presenced.reclaim}: memory given back once many users went
offline.
"""

from twisted.internet.task import Clock

from presenced.presence import PresenceTracker
from presenced.reclaim import MemoryReclaimer, cLibraryTrim, residentBytes
from test_presence import presence


class Recorder:
    """
    Stands in for the collector and the C library's trim, recording the
    order of their calls.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def trim(self) -> None:
        self.calls.append("trim")


def online(tracker: PresenceTracker, users: range) -> None:
    for n in users:
        tracker.available(f"user{n}@example.test", presence(resource="r"))


def offline(tracker: PresenceTracker, users: range) -> None:
    for n in users:
        tracker.unavailable(f"user{n}@example.test", "r", None, 0.0)


def reclaimer(tracker: PresenceTracker, clock: Clock, recorder: Recorder, resident=lambda: None) -> MemoryReclaimer:
    r = MemoryReclaimer(tracker, clock, trim=recorder.trim, collect=recorder.collect, resident=resident)
    r.minimum = 10
    r.startService()
    return r


def test_nothingIsReclaimedWhileUsersComeOnline():
    """
    While the users online only grow, nothing is collected or trimmed.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    for step in range(5):
        online(tracker, range(step * 20, step * 20 + 20))
        clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == []


def test_halfTheUsersGoneOfflineIsReclaimedOnce():
    """
    Once the users online have fallen to half the most seen, by at least
    C{minimum}, the next check collects and then trims; the next one, with
    no further fall, does nothing.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(40))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(20))
    assert recorder.calls == []
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == ["collect", "trim"]
    clock.advance(MemoryReclaimer.interval * 3)
    assert recorder.calls == ["collect", "trim"]


def test_usersWhoCameAndWentBetweenTwoChecksAreReclaimed():
    """
    The most online is the model's own high-water mark, not what the
    checks saw: users who came online and left between two checks are
    reclaimed too.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(40))
    offline(tracker, range(40))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == ["collect", "trim"]
    assert tracker.mostOnline == 0


def test_aFallFromTheLastReclaimIsMeasuredAgain():
    """
    After a reclaim, the most seen online starts again from who is online
    then: a further fall to half of that is reclaimed too.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(80))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(40))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(40, 60))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == ["collect", "trim"] * 2


def test_smallFallsAreNotReclaimed():
    """
    A fall to half that is smaller than C{minimum} users is not worth a
    collection.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(12))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(9))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == []


def test_noFallShortOfHalfIsReclaimed():
    """
    Users leaving, however many, while more than half the most seen stay
    online, are not reclaimed.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(100))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(49))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == []


def test_withoutATrimItStillCollects():
    """
    Where the C library cannot trim, a reclaim still collects.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    r = reclaimer(tracker, clock, recorder)
    r.trim = None
    online(tracker, range(20))
    clock.advance(MemoryReclaimer.interval)
    offline(tracker, range(20))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == ["collect"]


def test_aReclaimKeepsWhatTheModelKnows():
    """
    Compacting the model's tables keeps every user's presence: those still
    online and the offline ones' last status.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder)
    online(tracker, range(30))
    clock.advance(MemoryReclaimer.interval)
    tracker.unavailable("user0@example.test", "r", "Gone fishing", 5.0)
    offline(tracker, range(1, 20))
    clock.advance(MemoryReclaimer.interval)
    assert recorder.calls == ["collect", "trim"]
    assert tracker.onlineCount() == 10
    assert tracker.shown("user25@example.test").state.value == "available"
    gone = tracker.shown("user0@example.test")
    assert (gone.state.value, gone.status, gone.lastSeen) == ("offline", "Gone fishing", 5.0)


def test_aReclaimIsLoggedWithWhatItGaveBack():
    """
    A reclaim logs how many users left, how much memory it gave back and
    how much is in use.
    """
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
        sizes = iter([300 * 2 ** 20, 200 * 2 ** 20])
        reclaimer(tracker, clock, recorder, resident=lambda: next(sizes))
        online(tracker, range(20))
        clock.advance(MemoryReclaimer.interval)
        offline(tracker, range(20))
        clock.advance(MemoryReclaimer.interval)
    finally:
        globalLogPublisher.removeObserver(events.append)
    (event,) = [e for e in events if e.get("log_namespace") == "presenced.reclaim.MemoryReclaimer"]
    assert (event["left"], event["mib"], event["now"]) == (20, 100.0, 200.0)


def test_stoppedItChecksNoMore():
    """
    A stopped reclaimer leaves no call pending on the clock.
    """
    tracker, clock, recorder = PresenceTracker(), Clock(), Recorder()
    reclaimer(tracker, clock, recorder).stopService()
    assert clock.getDelayedCalls() == []


def test_thisProcessCanTrimAndTellItsSize():
    """
    On this (glibc) system the C library's trim is found and runs, and the
    resident size is read.
    """
    trim = cLibraryTrim()
    assert trim is not None
    trim()
    assert residentBytes() > 2 ** 20
