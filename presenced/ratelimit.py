"""
Log lines that others can cause at will, each kind at most once a minute;
the one place where limits report what they refuse; and the budget each
client address has for what it may cause per minute.
"""

from __future__ import annotations

from math import ceil
from typing import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel


class RateLimitedLog:
    """
    Emits each kind of line (its format string) through C{log} at most
    once every C{interval} seconds; the lines in between are counted, and
    the next one emitted says how many were left out.

    For what a remote party can make presenced log as often as it likes,
    such as refused requests or stanzas from the wrong sender, so that it
    cannot flood the log.  The count is also the event's C{suppressed}
    field.
    """

    def __init__(self, log: Logger, clock: IReactorTime, interval: float = 60.0) -> None:
        self.log = log
        self.clock = clock
        self.interval = interval
        self._kinds: dict[str, tuple[float, int]] = {}

    def info(self, format: str, **fields) -> None:
        """
        Emit an informational line, unless its kind was emitted lately.
        """
        self.emit(LogLevel.info, format, **fields)

    def warn(self, format: str, **fields) -> None:
        """
        Emit a warning, unless its kind was emitted lately.
        """
        self.emit(LogLevel.warn, format, **fields)

    def emit(self, level: LogLevel, format: str, **fields) -> None:
        """
        Emit a line at C{level}, unless a line of the same C{format} was
        emitted less than C{interval} seconds ago.
        """
        now = self.clock.seconds()
        last = self._kinds.get(format)
        if last is not None and now < last[0] + self.interval:
            self._kinds[format] = (last[0], last[1] + 1)
            return
        suppressed = 0 if last is None else last[1]
        self._kinds[format] = (now, 0)
        if suppressed:
            format += " ({suppressed} more like this not logged since the last one)"
        self.log.emit(level, format, suppressed=suppressed, **fields)


class Limits:
    """
    Where presenced's limits tell what they refuse, cut or drop: each
    time is counted by the limit's name and logged, at most once a minute
    per kind of line (L{RateLimitedLog}).

    @ivar counted: called with the limit's name each time (the metrics'
        L{presenced.metrics.Metrics.limited}); C{None}: nothing is.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float = 60.0) -> None:
        self.clock = clock
        self.lines = RateLimitedLog(self.log, clock, interval)
        self.counted: Callable[[str], None] | None = None

    def hit(self, limit: str, format: str, **fields) -> None:
        """
        Limit C{limit} refused, cut or dropped something; C{format} and
        C{fields} say what, in the log.

        @param limit: the limit's name, fixed in the code, as the metrics
            label it.
        """
        self.count(limit)
        self.lines.warn(format, limit=limit, **fields)

    def count(self, limit: str) -> None:
        """
        Count one hit of C{limit}, which logs it its own way.
        """
        if self.counted is not None:
            self.counted(limit)


class ClientBudget:
    """
    How much of something each client address may cause per window of
    C{window} seconds: C{allowance} each, counted from the first use in a
    window.  At most C{maxClients} addresses are tracked at once; beyond,
    the one whose window started first is forgotten.
    """

    def __init__(self, clock: IReactorTime, allowance: int, window: float = 60.0,
                 maxClients: int = 100_000) -> None:
        self.clock = clock
        self.allowance = allowance
        self.window = window
        self.maxClients = maxClients
        self._used: dict[str, list] = {}

    def retryAfter(self, client: str) -> int | None:
        """
        Whole seconds until C{client} may cause more, when it has used its
        allowance in this window; else C{None}.
        """
        used = self._used.get(client)
        if used is None:
            return None
        left = used[0] + self.window - self.clock.seconds()
        if left <= 0:
            del self._used[client]
            return None
        return max(1, ceil(left)) if used[1] >= self.allowance else None

    def spend(self, client: str) -> None:
        """
        Count one more use by C{client}.
        """
        now = self.clock.seconds()
        used = self._used.get(client)
        if used is None or now >= used[0] + self.window:
            self._used.pop(client, None)
            self._used[client] = used = [now, 0]
            while len(self._used) > self.maxClients:
                del self._used[next(iter(self._used))]
        used[1] += 1
