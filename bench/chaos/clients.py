"""
Scenario 5, slow and greedy clients: 1,000 connections that each send half
a request and then nothing, and at the same time one address opening
connections as fast as it can, while a well-behaved client on another
loopback address (127.0.0.2) keeps asking for alice's status.

The half requests come from four addresses (250 each, under
C{[http] max_connections_per_client}); every one must be closed by
presenced at C{[http] request_timeout} after its first byte, and counted
in C{presenced_limited_total{limit="request_timeout"}}.  The greedy
address (127.0.0.3) opens connections for a bounded time and count and
sends nothing on them: exactly C{max_connections_per_client} may stay
open, every other one must be closed at once.  The well-behaved client
must get every answer, a 200; its 99th percentile before and during the
flood is reported.  The short run sets C{request_timeout} to 4 s; the
full run keeps the default, 15 s.
"""

from __future__ import annotations

import http.client
import resource
import selectors
import socket
import threading
import time
from collections import Counter

from twisted.internet import threads

from bench.chaos.harness import Figures, Harness

NUMBER = 5
TITLE = "slow and greedy clients"

SLOW = 1_000
SLOW_ADDRESSES = [f"127.0.1.{n}" for n in range(1, 5)]
GREEDY, WELL_BEHAVED = "127.0.0.3", "127.0.0.2"
#: The greedy address's bound: connections, seconds.
FULL_GREEDY, SHORT_GREEDY = (10_000, 5.0), (2_000, 1.0)
FULL_TIMEOUT, SHORT_TIMEOUT = 15.0, 4.0
PER_CLIENT = 256
#: Seconds before the well-behaved client's flood figures start.
BASELINE = 1.0
#: How much later than the timeout a half request may be closed: the
#: reactor's timers are checked once per turn.
SLACK = 2.0
#: Connections opened before waiting for presenced to accept them.
PACE = 20


def percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


class WellBehaved:
    """
    Asks for one target over one keep-alive connection from C{source},
    one request after the other, until stopped; records each answer's
    time and status.
    """

    def __init__(self, port: int, target: str, source: str) -> None:
        self.port = port
        self.target = target
        self.source = source
        self.times: list[tuple[float, float]] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._ask, daemon=True)

    def start(self) -> "WellBehaved":
        self._thread.start()
        return self

    def stop(self) -> "WellBehaved":
        self._stop.set()
        self._thread.join(10)
        return self

    def seconds(self, since: float, until: float = float("inf")) -> list[float]:
        """
        The answer times of the requests sent between C{since} and C{until}.
        """
        return [took for sent, took in self.times if since <= sent < until]

    def _ask(self) -> None:
        connection = None
        while not self._stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                        source_address=(self.source, 0))
            sent = time.monotonic()
            try:
                connection.request("GET", self.target)
                response = connection.getresponse()
                response.read()
                self.times.append((sent, time.monotonic() - sent))
                self.statuses[response.status] += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                self.errors[type(e).__name__] += 1
                connection.close()
                connection = None
            time.sleep(0.005)
        if connection is not None:
            connection.close()


def closed(sock: socket.socket) -> bool:
    """
    Whether the peer closed C{sock} (it is readable and reads nothing, or
    was reset).
    """
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def acceptQueue(port: int) -> int:
    """
    How many connections to C{port} on 127.0.0.1 the kernel completed
    that presenced has not accepted yet.
    """
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    return 0


def keepUp(port: int) -> None:
    """
    Wait (up to 5 s) until presenced has accepted all but a few completed
    connections: beyond its listen backlog the kernel drops a client's
    handshake, which then retries seconds later, so its request would
    reach presenced late.
    """
    deadline = time.monotonic() + 5
    while acceptQueue(port) > PACE // 2 and time.monotonic() < deadline:
        time.sleep(0.002)


def halfRequests(port: int, target: str) -> list[tuple[socket.socket, float]]:
    """
    Open L{SLOW} connections from L{SLOW_ADDRESSES} in turn and send half
    a request on each; returns each socket and when its first byte went.
    """
    half = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow".encode()
    opened = []
    for n in range(SLOW):
        if n % PACE == 0:
            keepUp(port)
        sock = socket.socket()
        sock.bind((SLOW_ADDRESSES[n % len(SLOW_ADDRESSES)], 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(half)
        opened.append((sock, time.monotonic()))
        sock.setblocking(False)
    return opened


def watchClosing(opened: list[tuple[socket.socket, float]], until: float) -> tuple[list[float], Counter[str]]:
    """
    Wait until every socket of C{opened} is closed by the peer, or until
    C{until}; returns the seconds each took from its first byte and the
    first line of what each received before (C{"nothing"}).
    """
    selector = selectors.DefaultSelector()
    sent = {}
    received: dict[socket.socket, bytes] = {}
    for sock, at in opened:
        selector.register(sock, selectors.EVENT_READ)
        sent[sock] = at
    took: list[float] = []
    while sent and time.monotonic() < until:
        for key, _ in selector.select(0.05):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                received[sock] = received.get(sock, b"") + data
                continue
            took.append(time.monotonic() - sent.pop(sock))
            selector.unregister(sock)
    answers = Counter(received.get(sock, b"").split(b"\r\n", 1)[0].decode("latin-1") or "nothing"
                      for sock, _ in opened)
    selector.close()
    return took, answers


def greedy(port: int, count: int, seconds: float) -> dict:
    """
    Open connections from L{GREEDY} as fast as possible, for at most
    C{count} connections and C{seconds}; every 100, close those presenced
    closed.  Returns how many were opened, closed at once, still open and
    could not connect.  It keeps within presenced's listen backlog (see
    L{keepUp}): beyond it the kernel, not presenced, holds a connection
    back.
    """
    kept: list[socket.socket] = []
    figures = Counter(opened=0, refused=0, errors=0)
    errors: Counter[str] = Counter()

    def sweep(wait: float) -> None:
        selector = selectors.DefaultSelector()
        for sock in kept:
            selector.register(sock, selectors.EVENT_READ)
        ready = {key.fileobj for key, _ in selector.select(wait)}
        selector.close()
        for sock in list(kept):
            if sock in ready and closed(sock):
                kept.remove(sock)
                sock.close()
                figures["refused"] += 1

    deadline = time.monotonic() + seconds
    while figures["opened"] < count and time.monotonic() < deadline:
        if figures["opened"] % PACE == 0:
            keepUp(port)
        sock = socket.socket()
        sock.bind((GREEDY, 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError as e:
            figures["errors"] += 1
            errors[type(e).__name__] += 1
            sock.close()
            continue
        sock.setblocking(False)
        kept.append(sock)
        figures["opened"] += 1
        if figures["opened"] % 100 == 0:
            sweep(0)
    keepUp(port)
    time.sleep(0.2)
    sweep(0.3)
    figures["kept"] = len(kept)
    figures["errors by kind"] = dict(errors)
    for sock in kept:
        sock.close()
    return dict(figures)


def raiseFileLimit() -> int:
    """
    Raise this process's open-file limit to its hard limit (twistd, started
    from it, inherits it); returns the limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fileLimit(pid: int) -> int:
    """
    The open-file limit of process C{pid}.
    """
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError(f"no open-file limit for {pid}")


async def run(harness: Harness, full: bool) -> Figures:
    """
    Open the half requests and the greedy connections while the
    well-behaved client asks; wait until presenced closes the half
    requests.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited, tracebacks = harness.limited(), harness.tracebacks()
    timeout = FULL_TIMEOUT if full else SHORT_TIMEOUT
    count, seconds = FULL_GREEDY if full else SHORT_GREEDY
    ours = raiseFileLimit()
    if not full:
        harness.writeSettings(http=f"request_timeout = {timeout:g}")
        figures.expect(f"request_timeout set to {timeout:g} s (SIGHUP)", await harness.reload(), "done")
    target = harness.statusTarget(harness.alice)
    well = WellBehaved(harness.presenced.port, target, WELL_BEHAVED).start()
    opened: list[tuple[socket.socket, float]] = []
    try:
        await harness.sleep(BASELINE)
        flood = time.monotonic()
        opened = await threads.deferToThread(halfRequests, harness.presenced.port, target)
        halfOpened = time.monotonic() - flood
        flooded = await threads.deferToThread(greedy, harness.presenced.port, count, seconds)
        took, answers = await threads.deferToThread(watchClosing, opened, opened[-1][1] + timeout + SLACK + 10)
        ended = time.monotonic()
        await harness.sleep(0.5)
    finally:
        well.stop()
        for sock, _ in opened:
            sock.close()
    refused = harness.limited() - limited

    figures.add("open-file limit of the load client, of twistd", [ours, fileLimit(harness.pid)])
    figures.add("request_timeout (s)", timeout)
    figures.add("half requests sent", len(opened))
    figures.add("seconds to send them", round(halfOpened, 2))
    figures.expect("half requests closed by presenced", len(took), len(opened))
    figures.add("what the half requests got before the close", dict(answers))
    if took:
        figures.add("seconds from first byte to close: least, median, most",
                    [round(min(took), 2), round(percentile(took, 50), 2), round(max(took), 2)])
        figures.add("half requests closed before the timeout", sum(t < timeout - 0.05 for t in took),
                    "= 0", sum(t < timeout - 0.05 for t in took) == 0, timed=True)
        figures.within("seconds from first byte to close, most", round(max(took), 2), timeout + SLACK)
    figures.expect("counted as request_timeout", refused["request_timeout"], len(opened))
    figures.add(f"greedy connections from {GREEDY} (bound: {count:,} or {seconds:g} s)", flooded["opened"])
    figures.expect("greedy connections kept open", flooded["kept"], min(PER_CLIENT, flooded["opened"]))
    figures.expect("greedy connections closed at once", flooded["refused"], max(0, flooded["opened"] - PER_CLIENT))
    figures.add("greedy connections that could not connect", flooded["errors by kind"])
    counted = refused["max_connections_per_client"]
    figures.add("counted as max_connections_per_client", counted,
                "= closed at once (+ those that could not connect)",
                flooded["refused"] <= counted <= flooded["refused"] + flooded["errors"])
    figures.add("refused or cut by presenced's limits", dict(sorted(refused.items())))
    before, during = well.seconds(0, flood), well.seconds(flood, ended)
    figures.add(f"well-behaved client ({WELL_BEHAVED}): requests before, during the flood",
                [len(before), len(during)])
    figures.add("answers by status", dict(sorted(well.statuses.items())))
    figures.expect("well-behaved requests failed or not 200", sum(well.errors.values()) +
                   sum(n for status, n in well.statuses.items() if status != 200), 0)
    figures.add("well-behaved p50, p99 before the flood (ms)",
                [round(percentile(before, 50) * 1000, 1), round(percentile(before, 99) * 1000, 1)])
    figures.add("well-behaved p50, p99 during the flood (ms)",
                [round(percentile(during, 50) * 1000, 1), round(percentile(during, 99) * 1000, 1)])
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacks, 0)
    figures.expect("daemon running", harness.running(), True)
    figures.expect("health afterwards", harness.health(), 200)

    if not full:
        harness.writeSettings()
        await harness.reload()
    return figures
