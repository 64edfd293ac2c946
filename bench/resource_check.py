"""
The longest reactor turn that one round of the resource checker takes.

    python bench/resource_check.py [--users 10000] [--interval 300] [--timeout 5] [--rounds 1]

The component link runs over an in-memory transport with a fake clock and
C{--users} users online, one resource each; the checker's interval comes
and goes, then the clock is stepped from one scheduled call to the next
until every ping has timed out (no resource answers: the worst case, as
the timeouts run in the reactor too).  Each step is one reactor turn, and
is timed with C{time.perf_counter}.  Prints the number of turns, the
longest, the longest without a full garbage collection in it (which any
turn may meet, whatever it does, once the heap is this large), and the
total time they took.  With C{--rounds}, as many rounds run one after
the other in the same process, each on a fresh link (on PyPy, the first
one includes the JIT's warming up).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import time

from twisted.internet.base import DelayedCall
from twisted.internet.testing import StringTransport

from presenced.config import ComponentSettings
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.component import ComponentConnection, ResourceChecker

DOMAIN = "example.test"
COMPONENT = "presence.example.test"


class HeapClock:
    """
    A fake clock that keeps its calls in a heap, as the real reactor does
    (L{twisted.internet.task.Clock} sorts them all on every C{callLater},
    which would dwarf what is measured).
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[DelayedCall] = []

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay, f, *args, **kw) -> DelayedCall:
        call = DelayedCall(self.now + delay, f, args, kw, lambda call: None, lambda call: heapq.heapify(self.calls), self.seconds)
        heapq.heappush(self.calls, call)
        return call

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [call for call in self.calls if call.active()]

    def nextCall(self) -> float:
        while self.calls and not self.calls[0].active():
            heapq.heappop(self.calls)
        return self.calls[0].getTime()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self.calls and self.calls[0].getTime() <= self.now:
            call = heapq.heappop(self.calls)
            if call.active():
                call.called = 1
                call.func(*call.args, **call.kw)


def _noteFullCollections(collections: list) -> None:
    """
    Append to C{collections} at every full garbage collection from now on.
    """
    if hasattr(gc, "callbacks"):
        gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and collections.append(1))
    else:
        gc.hooks.on_gc_collect = lambda stats: collections.append(1)  # PyPy: major collections


def run(users: int, interval: float, timeout: float) -> tuple[list[tuple[float, bool]], int]:
    """
    Time every clock step of one round; return, for each step, its
    duration and whether a full garbage collection ran in it, and the
    number of pings sent.
    """
    clock = HeapClock()
    tracker = PresenceTracker()
    for number in range(users):
        tracker.available(f"user{number}@{DOMAIN}", ResourcePresence(state=State.AVAILABLE, resource="desk"))
    connection = ComponentConnection(clock, ComponentSettings(COMPONENT, "secret", "127.0.0.1", 5347, DOMAIN))
    ResourceChecker(tracker, clock, interval=interval, timeout=timeout).setHandlerParent(connection)
    xs = connection.factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    xs.dataReceived(
        f"<stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' from='{COMPONENT}' id='s1'><handshake/>".encode()
    )
    transport.clear()
    clock.advance(interval - 1)
    turns = []
    sent = 0
    fullCollections = []
    gc.collect()
    _noteFullCollections(fullCollections)
    while clock.seconds() < 2 * interval - 1:
        due = clock.nextCall()
        if due >= 2 * interval:
            break
        collections = len(fullCollections)
        started = time.perf_counter()
        clock.advance(due - clock.seconds())
        turns.append((time.perf_counter() - started, len(fullCollections) > collections))
        sent += transport.value().count(b"urn:xmpp:ping")
        transport.clear()
    return turns, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    for _ in range(options.rounds):
        report(*run(options.users, options.interval, options.timeout), users=options.users)


def report(turns: list[tuple[float, bool]], sent: int, users: int) -> None:
    """
    Print what one round took.
    """
    longest = max(duration for duration, collected in turns)
    longestUncollected = max((duration for duration, collected in turns if not collected), default=0.0)
    total = sum(duration for duration, collected in turns)
    print(
        f"{users} users, {sent} pings in {len(turns)} turns: longest {longest * 1000:.1f} ms, "
        f"longest without a full collection {longestUncollected * 1000:.1f} ms, total {total * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
