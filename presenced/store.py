"""
The embedded store: when offline users were last seen and what they said
going offline, kept in an SQLite file so that it survives a restart.

Only what presenced cannot learn again from the XMPP server is kept: for
each offline user (a normalised bare JID) who went offline with a time or
a status text, that time and text.  Online users have no row; who is
online the server tells again after a restart.

Writes never run in the reactor: the changes of a second are collected
in memory, the latest per user winning, and written in one transaction
on a thread of the store's own.  A write that fails is logged (at most
once a minute) and tried again at the next flush with everything still
pending; what is pending when presenced stops is written before it does.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Callable, Mapping, Optional, Tuple

from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from presenced.presence import PresenceTracker, Shown, State
from presenced.ratelimit import RateLimitedLog

#: Marks the file as presenced's (SQLite's C{PRAGMA application_id}): "pres".
APPLICATION_ID = 0x70726573
SCHEMA_VERSION = 1
_TABLE = ("CREATE TABLE last_seen (user TEXT PRIMARY KEY NOT NULL, status TEXT, last_seen REAL) "
          "WITHOUT ROWID")

#: Seconds the check at start waits for another connection's write lock.
CHECK_TIMEOUT = 0.2
#: Seconds a write waits for another connection's lock before it fails.
WRITE_TIMEOUT = 5.0

#: A user's row: the status text of their last unavailable presence and
#: when they went offline; C{None} for a user who has no row.
Row = Optional[Tuple[Optional[str], Optional[float]]]

_REASONS = {
    "database is locked": "locked by another process (is another presenced using it?)",
    "file is not a database": "not an SQLite database",
}


class StoreError(Exception):
    """
    A store file cannot be used; the message names it and says why.
    """


def rowOf(shown: Shown) -> Row:
    """
    What the store keeps of what a user shows: their status text and
    last-seen time when they are offline with either, else nothing.
    """
    if shown.state is State.OFFLINE and (shown.status is not None or shown.lastSeen is not None):
        return (shown.status, shown.lastSeen)
    return None


class StoreFile:
    """
    An open store file, checked.  Its methods block: they run on the
    store's writer thread, or before the reactor runs.

    @ivar path: where the file is.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._connection = connection

    @classmethod
    def open(cls, path: Path) -> StoreFile:
        """
        Open the store at C{path}, creating it (mode 0640, less the umask)
        with its table if it does not exist, and check that it can be
        written: a write transaction, which another process's write lock
        refuses within L{CHECK_TIMEOUT} seconds.

        @raise StoreError: the file cannot be opened or written, is locked,
            is not an SQLite database, or not a presenced store of this
            version.
        """
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as e:
            raise StoreError(f"cannot use the store {path}: {e.strerror}") from None
        try:
            regular = stat.S_ISREG(os.fstat(descriptor).st_mode)
        finally:
            os.close(descriptor)
        if not regular:
            raise StoreError(f"cannot use the store {path}: not a regular file")
        connection = sqlite3.connect(str(path), timeout=CHECK_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
        try:
            _check(connection)
        except sqlite3.Error as e:
            connection.close()
            reason = _REASONS.get(str(e), str(e))
            raise StoreError(f"cannot use the store {path}: {reason}") from None
        except StoreError as e:
            connection.close()
            raise StoreError(f"cannot use the store {path}: {e}") from None
        connection.execute(f"PRAGMA busy_timeout = {int(WRITE_TIMEOUT * 1000)}")
        return cls(path, connection)

    def read(self) -> list[tuple[str, str | None, float | None]]:
        """
        Every user's row, as C{(user, status, lastSeen)}; rows whose values
        are not of their column's type (written by something else) are
        left out.
        """
        return self._connection.execute(
            "SELECT user, status, CAST(last_seen AS REAL) FROM last_seen WHERE typeof(user) = 'text' "
            "AND typeof(status) IN ('text', 'null') AND typeof(last_seen) IN ('real', 'integer', 'null')"
        ).fetchall()

    def write(self, changes: Mapping[str, Row], replace: bool = False) -> None:
        """
        Write C{changes} (user to row, C{None} deleting it) in one
        transaction; with C{replace}, they replace every row.

        @raise sqlite3.Error: nothing was written.
        """
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            if replace:
                connection.execute("DELETE FROM last_seen")
            connection.executemany("DELETE FROM last_seen WHERE user = ?",
                                   ((user,) for user, row in changes.items() if row is None))
            connection.executemany("INSERT OR REPLACE INTO last_seen (user, status, last_seen) VALUES (?, ?, ?)",
                                   ((user, *row) for user, row in changes.items() if row is not None))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """
        Close the file.
        """
        self._connection.close()


def _check(connection: sqlite3.Connection) -> None:
    """
    In one write transaction: give an empty database the store's table, or
    check that it is a store of this version.

    @raise StoreError: it is another application's database, or another
        version's store.
    @raise sqlite3.Error: it cannot be read or written.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        [(application,)] = connection.execute("PRAGMA application_id").fetchall()
        [(version,)] = connection.execute("PRAGMA user_version").fetchall()
        [(objects,)] = connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        if application == 0 and objects == 0:
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute(_TABLE)
        elif application != APPLICATION_ID:
            raise StoreError("an SQLite database of something else, not a presenced store")
        elif version != SCHEMA_VERSION:
            raise StoreError(f"a presenced store of another version ({version}, not {SCHEMA_VERSION})")
        else:
            try:
                connection.execute("SELECT user, status, last_seen FROM last_seen LIMIT 0")
            except sqlite3.OperationalError as e:
                raise StoreError(f"a presenced store without its table ({e})") from None
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")


class WriterThread:
    """
    The one thread a store file is written on: a one-thread pool of the
    store's own, so that a slow disk never holds up the reactor's pool.
    """

    def __init__(self, reactor) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="presenced-store")

    def start(self) -> None:
        """
        Start the thread.
        """
        self._pool.start()

    def run(self, f: Callable, *args) -> defer.Deferred:
        """
        Run C{f(*args)} on the thread; the Deferred fires in the reactor
        with its result.
        """
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args)

    def stop(self) -> None:
        """
        Stop the thread, once what it was given has run.
        """
        self._pool.stop()


class StoreWriter:
    """
    Writes the changes it is given to one store file, batched: at most
    one transaction every C{interval} seconds, with the latest change of
    each user.  A write that fails is logged and its changes kept for the
    next one (newer changes of the same users winning).

    @ivar file: the file written.
    """

    def __init__(self, file: StoreFile, clock, thread: WriterThread, log: RateLimitedLog,
                 interval: float = 1.0) -> None:
        self.file = file
        self._thread = thread
        self._log = log
        self._pending: dict[str, Row] = {}
        self._replace = False
        self._failing = False
        self._lock = defer.DeferredLock()
        self._flusher = task.LoopingCall(self.flush)
        self._flusher.clock = clock
        self._interval = interval

    def start(self, replaceWith: dict[str, Row] | None = None) -> None:
        """
        Start the thread and the flushes.

        @param replaceWith: rows that are to replace the file's, at the
            first flush.
        """
        if replaceWith is not None:
            self._pending, self._replace = replaceWith, True
        self._thread.start()
        self._flusher.start(self._interval, now=False)

    def change(self, user: str, row: Row) -> None:
        """
        Have C{user}'s row become C{row} at the next flush.
        """
        self._pending[user] = row

    def flush(self) -> defer.Deferred:
        """
        Write what is pending, once any write under way is done.  The
        Deferred never fails: a failed write is logged and kept pending.
        """
        return self._lock.run(self._writePending)

    def _writePending(self) -> defer.Deferred | None:
        if not self._pending and not self._replace:
            return None
        changes, replace = self._pending, self._replace
        self._pending, self._replace = {}, False
        writing = self._thread.run(self.file.write, changes, replace)
        writing.addCallbacks(self._written, self._failed, errbackArgs=(changes, replace))
        return writing

    def _written(self, result) -> None:
        if self._failing:
            self._failing = False
            self._log.log.info("The store {path} is written again", path=self.file.path)

    def _failed(self, failure, changes: dict[str, Row], replace: bool) -> None:
        changes.update(self._pending)
        self._pending, self._replace = changes, replace or self._replace
        self._failing = True
        self._log.warn("Cannot write to the store {path}: {error}; {count} changes kept, to be written later",
                       path=self.file.path, error=failure.getErrorMessage(), count=len(changes))

    async def stop(self) -> None:
        """
        Stop flushing, write what is pending, close the file and stop the
        thread.
        """
        if self._flusher.running:
            self._flusher.stop()
        await self.flush()
        if self._pending:
            self._log.log.error("{count} changes could not be written to the store {path} and are lost",
                                count=len(self._pending), path=self.file.path)
        try:
            await self._thread.run(self.file.close)
        except Exception:
            self._log.log.failure("Cannot close the store {path}", path=self.file.path)
        self._thread.stop()


class LastSeenStore(Service):
    """
    Keeps, in a store file, when each offline user was last seen and the
    status they went offline with, and gives them back to the presence
    model at the next start.  Off when C{path} is C{None}.

    Started, it opens and checks the file (see L{StoreFile.open}),
    restores every user it holds into the model (before the XMPP link
    starts, as the service tree starts it first) and from then on writes
    what the model's observers are told: a row for a user who goes
    offline with a time or status, none for a user who comes online or
    is forgotten.

    A reload that names another file (L{prepare}, then L{reconfig}) moves
    the store there: the file in use is written up to that moment and
    closed, and the new one is given what the model knows of offline
    users, which replaces what it held.  Turned off, the file is written
    up to that moment and left as it is.

    @ivar path: the file in use, or C{None}.
    """

    log = Logger()

    def __init__(self, path: Path | None, tracker: PresenceTracker, reactor,
                 thread: Callable[[object], WriterThread] = WriterThread) -> None:
        self.path = path
        self.tracker = tracker
        self.reactor = reactor
        self._newThread = thread
        self._writeLog = RateLimitedLog(self.log, reactor)
        self._writer: StoreWriter | None = None
        self._stored: set[str] = set()

    def startService(self) -> None:
        """
        Open and check the file, and restore the users it holds.

        @raise StoreError: the file cannot be used.
        """
        if self.path is not None:
            file = StoreFile.open(self.path)
            try:
                rows = file.read()
            except sqlite3.Error as e:
                file.close()
                raise StoreError(f"cannot read the store {self.path}: {e}") from None
            for user, status, lastSeen in rows:
                self.tracker.restore(user, status, lastSeen)
            self._stored = {user for user, _, _ in rows}
            self._use(file)
            self.log.info("Restored {count} offline users from the store {path}", count=len(rows), path=self.path)
        super().startService()

    def stopService(self) -> defer.Deferred | None:
        """
        Write what is pending and close the file.
        """
        super().stopService()
        return self._release()

    def prepare(self, path: Path | None) -> StoreFile | None:
        """
        Open and check the file C{path} names, if the store is to move
        there; the store in use stays as it is.

        @return: the file opened, or C{None} if there is none to move to.
        @raise StoreError: it cannot be used.
        """
        if path is None or path == self.path:
            return None
        return StoreFile.open(path)

    def reconfig(self, path: Path | None, opened: StoreFile | None) -> None:
        """
        Use the store at C{path} from now on: C{opened}, what L{prepare}
        gave for it.
        """
        if path == self.path:
            return
        self._release()
        self.path = path
        if opened is not None:
            rows = {user: rowOf(shown) for user, shown in self.tracker.offlineUsers()}
            kept = {user: row for user, row in rows.items() if row is not None}
            self._stored = set(kept)
            self._use(opened, kept)

    def _use(self, file: StoreFile, replaceWith: dict[str, Row] | None = None) -> None:
        self._writer = StoreWriter(file, self.reactor, self._newThread(self.reactor), self._writeLog)
        self._writer.start(replaceWith)
        self.tracker.observers.append(self._changed)

    def _release(self) -> defer.Deferred | None:
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        self.tracker.observers.remove(self._changed)
        self._stored = set()
        return defer.ensureDeferred(writer.stop())

    def _changed(self, user: str, shown: Shown) -> None:
        row = rowOf(shown)
        if row is not None:
            self._stored.add(user)
            self._writer.change(user, row)
        elif user in self._stored:
            self._stored.discard(user)
            self._writer.change(user, None)
