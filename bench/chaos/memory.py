"""
Scenario 7, memory: a presenced of its own (the harness's Prosody's
component L{SECOND}) serves the users of L{CROWD}, a component of the same
Prosody whose 100,000 users send their presence through Prosody to it --
more users than could log in as clients.  Their stanzas have the shape
Prosody forwards from real clients (caps, delay, show, status, priority,
C{xml:lang}); the crowd would answer presenced's pings, which come every
300 s, so in a long run only.

With every user online, 1,000,000 distinct JIDs (of the served domain and
of a thousand others) are asked about in turn for each answer type over
pipelined connections, while the whole crowd goes offline and comes back
with a new status, round after round.  Then everyone goes offline, and
the crowd comes and goes a few times more.

presenced's RSS is read from C{/proc} before the crowd, with it online,
after each step, and at its peak over the whole run (the kernel's
high-water mark).  The peak must stay under the stated bound: the RSS
before, plus L{HEADROOM} times the memory the users and the caches may
take -- L{PER_USER} for each user online and L{CACHES} for every cache at
its cap.  The headroom is 1 on CPython, which frees an object as soon as
it is unused, and PyPy's default major-collection threshold on PyPy, whose
garbage collector lets the heap grow to that many times what the last
collection kept before it collects again.  The distinct JIDs fill the
caches of JID parsing and of answers; the roster cache (10,000 rosters)
and the avatar cache (16 MiB of pictures), which this public presenced
does not use, are bounded by their own caps, tested apart.

When users go offline presenced keeps only what their offline answer
needs (status text, last seen).  The interpreters keep freed memory for
reuse, and PyPy frees nothing before its next major collection, so once
the users online have fallen to half, presenced collects and returns the
C library's free memory to the system (L{presenced.reclaim}): each time
the crowd has left, the scenario waits for that, and reports how much
RSS it gave back and how long the reactor waited for it.  Objects still
in use (the offline users' records, the full caches) are spread over
the memory the interpreter took, which it can return only in whole
pages; so that the rest is not lost either, the memory must be reused:
the crowd then comes and goes a few more times (L{FULL_CYCLES}), and the
RSS after the last of them may exceed the RSS after the first by at most
L{REUSE} of what the crowd's first coming added.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections import Counter

from twisted.internet import defer, threads
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber import xmlstream

from bench.chaos.harness import CROWD, SECOND, Figures, Harness, get, logOf, memoryOf, tracebacksIn, usersOnline
from bench.run import Presenced
from presenced.reclaim import MemoryReclaimer

NUMBER = 7
TITLE = "memory"

FULL_USERS, SHORT_USERS = 100_000, 2_000
FULL_JIDS, SHORT_JIDS = 1_000_000, 20_000
#: Times the whole crowd goes offline and comes back while the JIDs are
#: asked about (fewer if the asking ends first).
FULL_ROUNDS, SHORT_ROUNDS = 4, 2
#: The bound: the RSS before, plus L{HEADROOM} times this for each user
#: online...
PER_USER = 2048
#: ... and this for every cache at its cap.
CACHES = 64 * 2 ** 20
#: By interpreter: how many times the memory in use its heap may hold.
HEADROOM = {"cpython": 1.0, "pypy": 1.82}
#: Times the crowd comes and goes after the others, to show that memory
#: is reused...
FULL_CYCLES, SHORT_CYCLES = 3, 2
#: ... the RSS after the last growing by at most this share of the first
#: coming's (short runs: plus L{SHORT_SLACK}, as a few thousand users are
#: within the interpreters' noise).
REUSE = 0.10
SHORT_SLACK = 16 * 2 ** 20
#: Requests on each connection before their answers are read.
DEPTH = 50
CONNECTIONS = 2
TYPES = ("text", "image", "json", "xml", "svg")
SHOWS = ("", "<show>away</show>", "<show>chat</show>", "<show>dnd</show>", "<show>xa</show>")
MiB = 2 ** 20
#: What presenced logs when it gave memory back.
RECLAIMED = "users went offline; gave back"


class CrowdPresenced(Presenced):
    """
    The scenario's own presenced: the benchmark's settings, serving the
    users of L{CROWD} as the component L{SECOND}.
    """

    def writeSettings(self, public: bool = True, accessLog: bool = False, metrics: bool = True) -> None:
        super().writeSettings(public, accessLog, metrics)
        text = self.settings.read_text()
        self.settings.write_text(text.replace(f"\ndomain = {self.prosody.domain}\n", f"\ndomain = {CROWD}\n", 1))


def available(n: int, round: int) -> str:
    return (
        f"<presence from='user{n}@{CROWD}/res{n % 3}' to='{SECOND}' xml:lang='en'>"
        f"{SHOWS[n % len(SHOWS)]}<status>Round {round} of user {n}</status><priority>{n % 10}</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' "
        "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>"
        f"<delay xmlns='urn:xmpp:delay' from='{CROWD}' stamp='2026-11-24T02:00:00Z'/></presence>"
    )


def unavailable(n: int) -> str:
    return f"<presence type='unavailable' from='user{n}@{CROWD}/res{n % 3}' to='{SECOND}'/>"


class Crowd:
    """
    The component L{CROWD} on the harness's Prosody, speaking for its
    users C{user0} to C{user<users - 1>}; answers every IQ get (pings) with
    an empty result.
    """

    def __init__(self, harness: Harness, users: int) -> None:
        self.harness = harness
        self.users = users
        self.xs: xmlstream.XmlStream | None = None
        self.factory = jabber_component.componentFactory(CROWD, harness.prosody.secret)
        self.pings = 0

    async def connect(self) -> None:
        authenticated: defer.Deferred = defer.Deferred()
        self.factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, authenticated.callback)
        self.factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, authenticated.errback)
        self.harness.reactor.connectTCP("127.0.0.1", self.harness.prosody.componentPort, self.factory)
        self.xs = await authenticated
        self.xs.addObserver("/iq[@type='get']", self._answer)

    def _answer(self, iq) -> None:
        self.pings += 1
        self.xs.send(f"<iq type='result' id='{_attribute(iq.getAttribute('id', ''))}' "
                     f"from='{_attribute(iq.getAttribute('to', ''))}' "
                     f"to='{_attribute(iq.getAttribute('from', ''))}'/>")

    def send(self, stanzas) -> None:
        """
        Send C{stanzas} (an iterable of strings), in large writes.
        """
        chunk: list[str] = []
        for stanza in stanzas:
            chunk.append(stanza)
            if len(chunk) == 200:
                self.xs.transport.write("".join(chunk).encode())
                chunk = []
        if chunk:
            self.xs.transport.write("".join(chunk).encode())

    def online(self, round: int) -> None:
        self.send(available(n, round) for n in range(self.users))

    def offline(self) -> None:
        self.send(unavailable(n) for n in range(self.users))

    def disconnect(self) -> None:
        self.factory.stopTrying()
        if self.xs is not None and self.xs.transport is not None:
            self.xs.transport.loseConnection()


def _attribute(text: str) -> str:
    return text.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


def queriedJID(n: int) -> str:
    """
    The C{n}th distinct JID asked about: nobody online, half of the
    served domain and half of a thousand others.
    """
    return f"visitor{n}@{CROWD}" if n % 2 == 0 else f"visitor{n}@site{n % 1000}.test"


class _Unclosed:
    """
    A buffered reader shared by successive pipelined answers, which
    L{http.client.HTTPResponse} would otherwise close after the first.
    """

    def __init__(self, reader) -> None:
        self._reader = reader

    def makefile(self, *args, **kwargs) -> "_Unclosed":
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self._reader, name)


def ask(port: int, first: int, count: int, step: int, seconds: float, statuses: Counter, errors: Counter,
        lock: threading.Lock) -> None:
    """
    Ask about C{queriedJID(first + k * step)} for C{k} below C{count}, each
    for the next of L{TYPES}, L{DEPTH} requests at a time on one keep-alive
    connection, for at most C{seconds}; count the answers by status and the
    connection errors.
    """
    deadline = time.monotonic() + seconds
    sock = None
    k = 0
    while k < count and time.monotonic() < deadline:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                reader = _Unclosed(sock.makefile("rb"))
            batch = range(k, min(k + DEPTH, count))
            sock.sendall(b"".join(
                f"GET /plugins/presence/status?jid={queriedJID(first + i * step)}&type={TYPES[i % len(TYPES)]} "
                f"HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for i in batch))
            got: Counter = Counter()
            for _ in batch:
                response = http.client.HTTPResponse(reader)
                response.begin()
                response.read()
                got[response.status] += 1
            with lock:
                statuses.update(got)
            k = batch.stop
        except (OSError, http.client.HTTPException) as e:
            with lock:
                errors[type(e).__name__] += 1
            if sock is not None:
                sock.close()
            sock = None
            k += DEPTH
    if sock is not None:
        sock.close()


async def run(harness: Harness, full: bool) -> Figures:
    users = FULL_USERS if full else SHORT_USERS
    jids = FULL_JIDS if full else SHORT_JIDS
    rounds = FULL_ROUNDS if full else SHORT_ROUNDS
    cycles = FULL_CYCLES if full else SHORT_CYCLES
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    work = harness.work / "memory"
    work.mkdir(exist_ok=True)
    second = CrowdPresenced(harness.interpreter, harness.prosody, SECOND, work)
    crowd = Crowd(harness, users)
    try:
        harness.say("starting a presenced of its own for the crowd")
        await threads.deferToThread(second.start, harness._spawn)
        port, pid = second.port, second.pid
        rss = lambda: memoryOf(pid, "VmRSS")  # noqa: E731

        async def shown(count: int, what: str, timeout: float) -> float:
            return await harness.until(lambda: usersOnline(port) == count, timeout, what, interval=0.2)

        await shown(0, "the crowd's presenced answers", 30)
        before = rss()
        await crowd.connect()
        started = time.monotonic()
        crowd.online(0)
        await shown(users, "the crowd online", 30 + users / 1000)
        figures.add("crowd users", users)
        figures.add("seconds until presenced showed them all online", round(time.monotonic() - started, 2))
        online = rss()

        harness.say(f"asking about {jids:,} distinct JIDs while the crowd churns")
        statuses: Counter[int] = Counter()
        errors: Counter[str] = Counter()
        lock = threading.Lock()
        budget = 60 + jids / 2000
        started = time.monotonic()
        asking = [threads.deferToThread(ask, port, n, -(-(jids - n) // CONNECTIONS), CONNECTIONS, budget,
                                        statuses, errors, lock) for n in range(CONNECTIONS)]
        done = defer.DeferredList(asking)
        churned = 0
        while churned < rounds and not done.called:
            crowd.offline()
            await shown(0, "the crowd offline", 30 + users / 1000)
            churned += 1
            crowd.online(churned)
            await shown(users, "the crowd online again", 30 + users / 1000)
        await done
        asked = time.monotonic() - started
        figures.add("distinct JIDs asked about", sum(statuses.values()) + sum(errors.values()))
        figures.add("answers by status", dict(sorted(statuses.items())))
        figures.expect("failed requests (connection errors, 5xx)",
                       sum(errors.values()) + sum(n for s, n in statuses.items() if s >= 500), 0)
        if errors:
            figures.add("connection errors", dict(errors))
        figures.add("requests per second", round(sum(statuses.values()) / asked))
        figures.add("rounds of the whole crowd offline and back meanwhile", churned)
        sample = range(0, users, max(1, users // 20))
        texts = await threads.deferToThread(
            lambda: {n: get(port, harness.statusTarget(f"user{n}@{CROWD}")).body.decode() for n in sample})
        wrong = [n for n, text in texts.items() if text != f"Round {churned} of user {n}"]
        figures.expect("users (of 20) whose text after the churn is not their last status", len(wrong), 0)

        async def everyoneOffline(what: str) -> bool:
            """
            Take the crowd offline and wait for presenced to give memory
            back; whether it did in time.
            """
            reclaims = logOf(second).count(RECLAIMED)
            crowd.offline()
            await shown(0, what, 30 + users / 1000)
            return await harness.within(lambda: logOf(second).count(RECLAIMED) > reclaims,
                                        2 * MemoryReclaimer.interval + 5, interval=0.5) is not None

        stillOnline = rss()
        reclaimed = await everyoneOffline("the crowd offline")
        offline = rss()
        cycled = []
        for cycle in range(cycles):
            crowd.online(churned + 1 + cycle)
            await shown(users, "the crowd online once more", 30 + users / 1000)
            reclaimed &= await everyoneOffline("the crowd offline once more")
            cycled.append(rss())
        peak = memoryOf(pid, "VmHWM")

        headroom = HEADROOM[harness.interpreter]
        bound = before + headroom * (PER_USER * users + CACHES)
        figures.add("RSS before the crowd (MiB)", round(before / MiB, 1))
        figures.add("RSS with the crowd online (MiB)", round(online / MiB, 1))
        figures.add("bytes of RSS per user online", round((online - before) / users))
        figures.add(f"RSS at its peak (MiB); bound: before + headroom × ({PER_USER} B per user + "
                    f"{CACHES // MiB} MiB)", round(peak / MiB, 1),
                    f"<= {bound / MiB:.1f} (headroom {headroom})", peak <= bound)
        figures.add("RSS with everyone offline after the JIDs (MiB)", round(offline / MiB, 1))
        figures.expect("each time everyone left, presenced gave memory back", reclaimed, True)
        figures.add("RSS everyone going offline gave back (MiB)", round((stillOnline - offline) / MiB, 1))
        figures.add(f"RSS after each of {cycles} more comings and goings (MiB)",
                    [round(r / MiB, 1) for r in cycled])
        allowed = REUSE * (online - before) + (0 if full else SHORT_SLACK)
        figures.add("RSS the last of them added to the first's (MiB)", round((cycled[-1] - cycled[0]) / MiB, 1),
                    f"<= {allowed / MiB:.1f} ({REUSE:.0%} of the first coming's{'' if full else ' + slack'})",
                    cycled[-1] - cycled[0] <= allowed)
        reclaims = [(float(mib), float(seconds)) for mib, seconds in
                    re.findall(r"gave back (-?[\d.]+) MiB of memory in ([\d.]+) s", logOf(second))]
        figures.add("times presenced gave memory back", len(reclaims))
        figures.add("MiB it gave back each time", [mib for mib, _ in reclaims])
        figures.add("seconds the longest took (the reactor waits meanwhile)",
                    max((seconds for _, seconds in reclaims), default=0.0))
        figures.add("pings the crowd answered", crowd.pings)
        figures.expect("tracebacks in its log", tracebacksIn(logOf(second)), 0)
        figures.expect("health afterwards", get(port, "/plugins/presence/health").status, 200)
        figures.notes.append("The crowd is a component of the same Prosody; its presence reaches presenced "
                             "through Prosody's routing, not through client sessions.")
    finally:
        crowd.disconnect()
        if second.process is not None and second.process.poll() is None:
            second.process.terminate()
            await threads.deferToThread(second.process.wait, 30)
    return figures
