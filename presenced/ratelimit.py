"""
Log lines that others can cause at will, each kind at most once a minute.
"""

from __future__ import annotations

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
