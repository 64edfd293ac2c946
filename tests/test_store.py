"""
Tests for L{presenced.store}: the embedded store of offline users, with a
real SQLite file, a L{task.Clock} deciding when it is written, and its
writer thread run at once (but for one test, which uses the real one).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import LogLevel, capturedLogs, formatEvent

from presenced import store
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.store import LastSeenStore, StoreError

from storehelpers import ImmediateThread, storedRows, transactions


class Running:
    """
    A tracker and a started store on C{path}, driven by a clock.
    """

    def __init__(self, path: Path, tracker: PresenceTracker | None = None) -> None:
        self.clock = task.Clock()
        self.tracker = tracker or PresenceTracker()
        self.store = LastSeenStore(path, self.tracker, self.clock, ImmediateThread)
        self.store.startService()

    def leave(self, user: str, status: str | None, when: float, resource: str = "r") -> None:
        self.tracker.available(user, ResourcePresence(resource=resource, state=State.AVAILABLE, received=when - 1))
        self.tracker.unavailable(user, resource, status, when)

    def come(self, user: str, when: float) -> None:
        self.tracker.available(user, ResourcePresence(resource="r", state=State.AWAY, received=when))


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "presence.sqlite"


def test_newFileIsCreatedOwnerAndGroupOnly(path):
    """
    A store that does not exist is created, readable by owner and group
    only, and empty.
    """
    Running(path).store.stopService()
    assert (path.stat().st_mode & 0o777, storedRows(path)) == (0o640, [])


def test_changesOfASecondAreOneTransaction(path):
    """
    Many changes within a second are written together, in one
    transaction, once the second has passed.
    """
    running = Running(path)
    before = transactions(path)
    for n in range(50):
        running.leave(f"user{n}@example.test", f"Bye {n}", 100.0 + n)
    running.clock.advance(0.9)
    assert transactions(path) == before
    running.clock.advance(0.1)
    assert transactions(path) == before + 1
    assert len(storedRows(path)) == 50
    running.clock.advance(5)
    assert transactions(path) == before + 1


def test_latestChangeOfAUserWins(path):
    """
    Of a user's changes within a second, the last one is what is written.
    """
    running = Running(path)
    running.leave("a@example.test", "Lunch", 100.0)
    running.come("a@example.test", 101.0)
    running.leave("a@example.test", "Home", 102.0)
    running.leave("b@example.test", "Gone", 103.0)
    running.come("b@example.test", 104.0)
    running.clock.advance(1)
    assert storedRows(path) == [("a@example.test", "Home", 102.0)]


def test_userWhoComesOnlineOrIsForgottenHasNoRow(path):
    """
    A user's row is deleted when they come online, or are forgotten.
    """
    running = Running(path)
    running.leave("a@example.test", "Lunch", 100.0)
    running.leave("b@example.test", None, 100.0)
    running.clock.advance(1)
    assert len(storedRows(path)) == 2
    running.come("a@example.test", 101.0)
    running.tracker.forget("b@example.test")
    running.clock.advance(1)
    assert storedRows(path) == []


def test_offlineWithNothingToKeepHasNoRow(path):
    """
    Users shown offline with neither a status nor a last-seen time (those
    online when the link was lost) get no row.
    """
    running = Running(path)
    running.come("a@example.test", 100.0)
    running.tracker.clear()
    running.clock.advance(1)
    assert (running.tracker.shown("a@example.test").state, storedRows(path)) == (State.OFFLINE, [])


def test_storedUsersRestoredAtStart(path):
    """
    At start, every user in the file is restored into the model, with the
    status and last-seen time stored; from then on their changes are
    written.
    """
    first = Running(path)
    first.leave("a@example.test", "On holiday", 1700000000.5)
    first.leave("b@example.test", None, 1700000100.0)
    first.store.stopService()

    second = Running(path)
    shown = second.tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.lastSeen) == (State.OFFLINE, "On holiday", 1700000000.5)
    assert second.tracker.shown("b@example.test").lastSeen == 1700000100.0
    second.come("a@example.test", 1700000200.0)
    second.clock.advance(1)
    assert storedRows(path) == [("b@example.test", None, 1700000100.0)]


def test_rowsOfOtherTypesAreNotRestored(path):
    """
    Rows that something else wrote with values of the wrong type are left
    out of what is restored.
    """
    Running(path).store.stopService()
    with sqlite3.connect(path) as other:
        other.execute("INSERT INTO last_seen VALUES ('a@example.test', 'Fine', 10)")
        other.execute("INSERT INTO last_seen VALUES ('b@example.test', 'Bad', 'yesterday')")
        other.execute("INSERT INTO last_seen VALUES ('c@example.test', x'00', NULL)")
    tracker = Running(path).tracker
    assert [tracker.shown(f"{u}@example.test").status for u in "abc"] == ["Fine", None, None]


def test_pendingChangesWrittenOnStop(path):
    """
    Changes still pending when the store stops are written before it has.
    """
    running = Running(path)
    running.leave("a@example.test", "Bye", 100.0)
    stopped = running.store.stopService()
    assert stopped.called
    assert storedRows(path) == [("a@example.test", "Bye", 100.0)]


@contextmanager
def asNobody():
    """
    Run the block as the nobody account when the tests run as root (who
    may read anything); as themselves otherwise.
    """
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def openToAll():
    """
    A directory that every account may enter (unlike those under
    C{tmp_path} when the tests run as root), removed afterwards.
    """
    directory = Path(tempfile.mkdtemp(prefix="presenced-store-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def notADatabase(tmp_path: Path) -> Path:
    path = tmp_path / "presence.sqlite"
    path.write_bytes(b"These are not the bytes of an SQLite database. " * 10)
    return path


def aDirectory(tmp_path: Path) -> Path:
    (tmp_path / "presence.sqlite").mkdir()
    return tmp_path / "presence.sqlite"


def anotherApplicationsDatabase(tmp_path: Path) -> Path:
    with sqlite3.connect(tmp_path / "other.sqlite") as other:
        other.execute("CREATE TABLE accounts (name TEXT)")
    return tmp_path / "other.sqlite"


def anotherVersion(tmp_path: Path) -> Path:
    path = tmp_path / "presence.sqlite"
    Running(path).store.stopService()
    with sqlite3.connect(path) as other:
        other.execute("PRAGMA user_version = 7")
    return path


UNUSABLE = {
    "not a database": (notADatabase, "not an SQLite database"),
    "a directory": (aDirectory, "Is a directory"),
    "another application's": (anotherApplicationsDatabase, "not a presenced store"),
    "another version": (anotherVersion, "of another version (7, not 1)"),
}


@pytest.mark.parametrize("kind", UNUSABLE)
def test_unusableFileRefusesToStart(openToAll, kind):
    """
    A store that cannot be used stops the start with an error naming the
    file and why, and nothing is restored.
    """
    make, reason = UNUSABLE[kind]
    path = make(openToAll)
    tracker = PresenceTracker()
    unused = LastSeenStore(path, tracker, task.Clock(), ImmediateThread)
    with pytest.raises(StoreError) as caught:
        unused.startService()
    assert str(caught.value).startswith(f"cannot use the store {path}: ")
    assert reason in str(caught.value)
    assert not unused.running and tracker.offlineUsers() == []


def test_unreadableFileRefusesToStart(openToAll):
    """
    A store that the account presenced runs as may not read refuses to
    start, naming the file.
    """
    path = openToAll / "presence.sqlite"
    Running(path).store.stopService()
    path.chmod(0o600 if os.geteuid() == 0 else 0)
    with asNobody(), pytest.raises(StoreError, match=f"cannot use the store {path}: Permission denied"):
        LastSeenStore(path, PresenceTracker(), task.Clock(), ImmediateThread).startService()


def test_fileLockedByAnotherWriterRefusesToStart(path):
    """
    A store another connection holds a write lock on refuses to start,
    as a file in use by another process.
    """
    Running(path).store.stopService()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=f"cannot use the store {path}: locked by another process"):
            LastSeenStore(path, PresenceTracker(), task.Clock(), ImmediateThread).startService()
    finally:
        other.close()


def test_failedWriteIsLoggedAndRetried(path, monkeypatch):
    """
    A write that fails (here: another process holds the file's lock) is
    logged, at most once a minute, and its changes are written at the
    first flush that succeeds, with the changes made since.
    """
    monkeypatch.setattr(store, "WRITE_TIMEOUT", 0.01)
    running = Running(path)
    running.leave("a@example.test", "First", 100.0)
    running.leave("b@example.test", "Second", 100.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with capturedLogs() as events:
        running.clock.advance(1)
        running.leave("a@example.test", "Later", 101.0)
        running.clock.advance(1)
        other.close()
        running.clock.advance(1)
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    assert f"Cannot write to the store {path}: database is locked" in warnings[0]
    assert storedRows(path) == [("a@example.test", "Later", 101.0), ("b@example.test", "Second", 100.0)]
    assert any(formatEvent(e) == f"The store {path} is written again" for e in events)


def test_changesThatCannotBeWrittenAtStopAreLogged(path, monkeypatch):
    """
    If what is pending cannot be written when the store stops, the log
    says how many changes are lost.
    """
    monkeypatch.setattr(store, "WRITE_TIMEOUT", 0.01)
    running = Running(path)
    running.leave("a@example.test", "Bye", 100.0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with capturedLogs() as events:
        running.store.stopService()
    other.close()
    assert f"1 changes could not be written to the store {path} and are lost" in [
        formatEvent(e) for e in events if e["log_level"] == LogLevel.error]


def test_reloadMovesToNewFileWithWhatTheModelKnows(tmp_path):
    """
    Moved to another file, the store writes the old one up to that moment
    and leaves it; the new one gets what the model knows of offline users
    in place of what it held, and the changes from then on.
    """
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    stale = Running(new)
    stale.leave("stale@example.test", "Long ago", 1.0)
    stale.store.stopService()
    running = Running(old)
    running.leave("a@example.test", "Bye", 100.0)
    running.clock.advance(1)
    running.leave("b@example.test", "Later", 101.0)

    running.store.reconfig(new, running.store.prepare(new))
    assert storedRows(old) == [("a@example.test", "Bye", 100.0), ("b@example.test", "Later", 101.0)]
    running.leave("c@example.test", "Last", 102.0)
    running.clock.advance(1)
    assert storedRows(new) == [("a@example.test", "Bye", 100.0), ("b@example.test", "Later", 101.0),
                               ("c@example.test", "Last", 102.0)]
    assert len(storedRows(old)) == 2


def test_reloadToOffLeavesTheFile(path):
    """
    Turned off, the store writes what is pending and no more.
    """
    running = Running(path)
    running.leave("a@example.test", "Bye", 100.0)
    running.store.reconfig(None, running.store.prepare(None))
    running.leave("b@example.test", "Not kept", 101.0)
    running.clock.advance(5)
    assert storedRows(path) == [("a@example.test", "Bye", 100.0)]


def test_reloadToUnusableFileIsRefused(path, tmp_path):
    """
    Preparing a move to a file that cannot be used raises, and the store
    in use stays as it is.
    """
    running = Running(path)
    (tmp_path / "x").mkdir()
    with pytest.raises(StoreError, match=f"cannot use the store {aDirectory(tmp_path / 'x')}: Is a directory"):
        running.store.prepare(tmp_path / "x" / "presence.sqlite")
    running.leave("a@example.test", "Bye", 100.0)
    running.clock.advance(1)
    assert storedRows(path) == [("a@example.test", "Bye", 100.0)]


def test_unchangedPathKeepsTheStore(path):
    """
    A reload naming the file in use changes nothing: pending changes stay
    pending until the next flush.
    """
    running = Running(path)
    running.leave("a@example.test", "Bye", 100.0)
    before = transactions(path)
    assert running.store.prepare(path) is None
    running.store.reconfig(path, None)
    assert transactions(path) == before
    running.clock.advance(1)
    assert storedRows(path) == [("a@example.test", "Bye", 100.0)]


@pytest_twisted.ensureDeferred
async def test_writesOnItsOwnThread(path):
    """
    With its real thread, the store writes within a second of a change,
    and writes what is pending when it stops.
    """
    tracker = PresenceTracker()
    running = LastSeenStore(path, tracker, reactor)
    running.startService()
    tracker.unavailable("a@example.test", None, "Bye", 100.0)
    for _ in range(40):
        await task.deferLater(reactor, 0.05)
        if storedRows(path):
            break
    assert storedRows(path) == [("a@example.test", "Bye", None)]
    tracker.unavailable("b@example.test", None, "Later", 101.0)
    await running.stopService()
    assert storedRows(path) == [("a@example.test", "Bye", None), ("b@example.test", "Later", None)]
