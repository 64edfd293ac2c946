"""
Tests for L{presenced.reclaim}: memory given back once many users went
offline.
"""

from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from presenced.presence import PresenceTracker
from presenced.reclaim import MemoryReclaimer, cLibraryTrim, residentBytes
from test_presence import presence


class Scene:
    """
    A model, a reclaimer started on a fake clock (reclaiming falls of 10
    users or more), and stand-ins for the collector and the C library's
    trim that record the order of their calls in L{calls}.
    """

    def __init__(self, resident=lambda: None) -> None:
        self.tracker, self.clock, self.calls = PresenceTracker(), Clock(), []
        self.reclaimer = MemoryReclaimer(self.tracker, self.clock, trim=lambda: self.calls.append("trim"),
                                         collect=lambda: self.calls.append("collect"), resident=resident)
        self.reclaimer.minimum = 10
        self.reclaimer.startService()

    def online(self, users: range) -> None:
        for n in users:
            self.tracker.available(f"user{n}@example.test", presence(resource="r"))

    def offline(self, users: range) -> None:
        for n in users:
            self.tracker.unavailable(f"user{n}@example.test", "r", None, 0.0)

    def checked(self, times: int = 1) -> list[str]:
        """
        Let the reclaimer check C{times} times; the calls so far.
        """
        self.clock.advance(MemoryReclaimer.interval * times)
        return self.calls


def test_nothingIsReclaimedWhileUsersComeOnline():
    """
    While the users online only grow, nothing is collected or trimmed.
    """
    scene = Scene()
    for step in range(5):
        scene.online(range(step * 20, step * 20 + 20))
        scene.checked()
    assert scene.calls == []


def test_halfTheUsersGoneOfflineIsReclaimedOnce():
    """
    Once the users online have fallen to half the most seen, by at least
    C{minimum}, the next check collects and then trims; the next one, with
    no further fall, does nothing.
    """
    scene = Scene()
    scene.online(range(40))
    scene.checked()
    scene.offline(range(20))
    assert scene.calls == []
    assert scene.checked() == ["collect", "trim"]
    assert scene.checked(3) == ["collect", "trim"]


def test_usersWhoCameAndWentBetweenTwoChecksAreReclaimed():
    """
    The most online is the model's own high-water mark, not what the
    checks saw: users who came online and left between two checks are
    reclaimed too.
    """
    scene = Scene()
    scene.online(range(40))
    scene.offline(range(40))
    assert scene.checked() == ["collect", "trim"]
    assert scene.tracker.mostOnline == 0


def test_aFallFromTheLastReclaimIsMeasuredAgain():
    """
    After a reclaim, the most seen online starts again from who is online
    then: a further fall to half of that is reclaimed too.
    """
    scene = Scene()
    scene.online(range(80))
    scene.checked()
    scene.offline(range(40))
    scene.checked()
    scene.offline(range(40, 60))
    assert scene.checked() == ["collect", "trim"] * 2


def test_smallFallsAreNotReclaimed():
    """
    A fall to half that is smaller than C{minimum} users is not worth a
    collection.
    """
    scene = Scene()
    scene.online(range(12))
    scene.checked()
    scene.offline(range(9))
    assert scene.checked() == []


def test_noFallShortOfHalfIsReclaimed():
    """
    Users leaving, however many, while more than half the most seen stay
    online, are not reclaimed.
    """
    scene = Scene()
    scene.online(range(100))
    scene.checked()
    scene.offline(range(49))
    assert scene.checked() == []


def test_withoutATrimItStillCollects():
    """
    Where the C library cannot trim, a reclaim still collects.
    """
    scene = Scene()
    scene.reclaimer.trim = None
    scene.online(range(20))
    scene.checked()
    scene.offline(range(20))
    assert scene.checked() == ["collect"]


def test_aReclaimKeepsWhatTheModelKnows():
    """
    Compacting the model's tables keeps every user's presence: those still
    online and the offline ones' last status.
    """
    scene = Scene()
    scene.online(range(30))
    scene.checked()
    scene.tracker.unavailable("user0@example.test", "r", "Gone fishing", 5.0)
    scene.offline(range(1, 20))
    assert scene.checked() == ["collect", "trim"]
    assert scene.tracker.onlineCount() == 10
    assert scene.tracker.shown("user25@example.test").state.value == "available"
    gone = scene.tracker.shown("user0@example.test")
    assert (gone.state.value, gone.status, gone.lastSeen) == ("offline", "Gone fishing", 5.0)


def test_aReclaimIsLoggedWithWhatItGaveBack():
    """
    A reclaim logs how many users left, how much memory it gave back and
    how much is in use.
    """
    sizes = iter([300 * 2 ** 20, 200 * 2 ** 20])
    scene = Scene(resident=lambda: next(sizes))
    scene.online(range(20))
    scene.checked()
    scene.offline(range(20))
    with capturedLogs() as events:
        scene.checked()
    (event,) = [e for e in events if e.get("log_namespace") == "presenced.reclaim.MemoryReclaimer"]
    assert (event["left"], event["mib"], event["now"]) == (20, 100.0, 200.0)


def test_stoppedItChecksNoMore():
    """
    A stopped reclaimer leaves no call pending on the clock.
    """
    scene = Scene()
    scene.reclaimer.stopService()
    assert scene.clock.getDelayedCalls() == []


def test_thisProcessCanTrimAndTellItsSize():
    """
    On this (glibc) system the C library's trim is found and runs, and the
    resident size is read.
    """
    trim = cLibraryTrim()
    assert trim is not None
    trim()
    assert residentBytes() > 2 ** 20
