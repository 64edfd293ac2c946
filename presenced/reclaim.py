"""
Memory given back to the system once many users have gone offline.

Both interpreters keep the memory that freed objects leave for later
reuse, and PyPy frees nothing until its next major collection: after a
crowd of users has left (a server restart, a lost link, the end of a
working day), what presenced holds would otherwise stay at its highest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import time
from typing import Callable

from twisted.application import service
from twisted.internet import task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from presenced.presence import PresenceTracker


def residentBytes() -> int | None:
    """
    This process's resident set size, or C{None} where C{/proc} does not
    tell it.
    """
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def cLibraryTrim() -> Callable[[], None] | None:
    """
    The C library's way to return its free memory to the system (glibc's
    C{malloc_trim}), or C{None} where there is none.
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryReclaimer(service.Service):
    """
    Every L{interval} seconds, looks at how many users are online; when
    that has fallen to half the most online at once since the last reclaim
    (L{PresenceTracker.mostOnline}), or less, and by at least L{minimum}
    users, gives memory back: the model's tables are compacted, the
    garbage collected and the C library's free memory returned to the
    system.  That takes a moment of the reactor, so it is
    done once per such fall, not per user who leaves.

    @ivar trim: returns the C library's free memory, or C{None}.
    @ivar collect: a full garbage collection.
    @ivar resident: this process's resident bytes, for the log, or C{None}.
    """

    log = Logger()
    name = "reclaim"

    interval = 5.0
    minimum = 1000

    def __init__(self, tracker: PresenceTracker, clock: IReactorTime,
                 trim: Callable[[], None] | None = None, collect: Callable[[], object] = gc.collect,
                 resident: Callable[[], int | None] = residentBytes) -> None:
        self.tracker = tracker
        self.clock = clock
        self.trim = trim
        self.collect = collect
        self.resident = resident
        self._loop: task.LoopingCall | None = None

    @classmethod
    def forThisProcess(cls, tracker: PresenceTracker, clock: IReactorTime) -> MemoryReclaimer:
        """
        A reclaimer that trims with this process's C library, if it can.
        """
        return cls(tracker, clock, trim=cLibraryTrim())

    def startService(self) -> None:
        super().startService()
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self) -> None:
        """
        Give memory back if enough users went offline since the last time.
        """
        online, most = self.tracker.onlineCount(), self.tracker.mostOnline
        if most - online >= self.minimum and online * 2 <= most:
            self.tracker.mostOnline = online
            self.reclaim(most - online)

    def reclaim(self, left: int) -> None:
        """
        Give memory back, now that C{left} users went offline; log how
        much, and how long it took.
        """
        before, started = self.resident(), time.monotonic()
        self.tracker.compact()
        self.collect()
        if self.trim is not None:
            self.trim()
        after, took = self.resident(), time.monotonic() - started
        if before is not None and after is not None:
            self.log.info("{left} users went offline; gave back {mib:.1f} MiB of memory in {seconds:.3f} s, "
                          "{now:.1f} MiB in use", left=left, mib=(before - after) / 2 ** 20, seconds=took,
                          now=after / 2 ** 20)
