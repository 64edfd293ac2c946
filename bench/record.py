"""
Record the presence stream a privileged component receives from a real
Prosody, for the ingestion benchmark to replay.

    python bench/record.py [OUTPUT]     (default bench/recorded/prosody.json)

A throwaway Prosody gets USERS accounts.  Half of them log in (one to
three resources each, sending what common clients send: caps, a vCard
photo hash, idle times, statuses in several languages); then a component
connects, which receives Prosody's burst of current presence, and the
other half log in.  Then the users change their presence, some resources
sign off with a status, some drop their connection (Prosody sends their
unavailable) and some come back.  Everything Prosody sends the component
after its handshake is split into stanzas and written out as JSON, with
the number of users online at the end.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from xml.parsers import expat

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.words.protocols.jabber import component, xmlstream

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from presenced.sandbox.client import SandboxClient  # noqa: E402
from presenced.sandbox.prosody import Prosody  # noqa: E402

USERS = 60
PASSWORD = "record-password"
CLIENTS = [
    ("https://conversations.im", "Conversations"),
    ("https://gajim.org", "Gajim"),
    ("https://dino.im", "Dino"),
    ("http://psi-im.org", "Psi"),
]
STATUSES = [None, "At lunch", "In a meeting until 3", "Working from home", "Bin gleich zurück",
            "En réunion", "🎧 focusing", "Back on Monday"]
SHOWS = [None, None, "away", "chat", "dnd", "xa"]


def presence(rng: random.Random, user: int, show: str | None = None, status: str | None = None) -> str:
    """
    An available presence as a common client sends it.
    """
    node, _ = CLIENTS[user % len(CLIENTS)]
    parts = ["<presence>"]
    if show:
        parts.append(f"<show>{show}</show>")
    if status:
        parts.append(f"<status>{status}</status>")
        if user % 5 == 0:
            parts.append(f"<status xml:lang='de'>{status} (de)</status>")
    parts.append(f"<priority>{rng.choice([0, 1, 5, 10, 50, -1])}</priority>")
    parts.append(f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{node}' "
                 f"ver='{rng.choice(['q07IKJEyjvHSyhy//CH0CxmKi8w=', 'ZuJyNCcaTJtCBSaVCoqEeFdCG0k='])}'/>")
    if user % 3 == 0:
        parts.append(f"<x xmlns='vcard-temp:x:update'><photo>{rng.getrandbits(160):040x}</photo></x>")
    if show in ("away", "xa"):
        parts.append("<idle xmlns='urn:xmpp:idle:1' since='2026-11-30T08:12:00Z'/>")
    parts.append("</presence>")
    return "".join(parts)


def stanzas(data: bytes) -> list[str]:
    """
    The top-level elements in C{data}, a stream's content, as text.
    """
    wrapped = b"<stream>" + data + b"</stream>"
    starts, depth = [], 0
    parser = expat.ParserCreate()

    def start(name, attributes):
        nonlocal depth
        depth += 1
        if depth == 2:
            starts.append(parser.CurrentByteIndex)

    def end(name):
        nonlocal depth
        depth -= 1

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.Parse(wrapped, True)
    bounds = starts + [len(wrapped) - len(b"</stream>")]
    return [wrapped[a:b].strip().decode("utf-8") for a, b in zip(bounds, bounds[1:])]


async def record(reactor, output: Path) -> None:
    rng = random.Random(20261202)
    server = Prosody(loglevel="warn")
    server.start()
    try:
        users = [server.register(f"u{n}", PASSWORD) for n in range(USERS)]
        sessions: list[tuple[int, SandboxClient]] = []

        async def login(n: int) -> None:
            for resource in range(1 + n % 3):
                client = await SandboxClient(reactor, f"{users[n]}/{CLIENTS[n % 4][1]}{resource}",
                                             PASSWORD, server.c2sPort).connect()
                client.manager.send(presence(rng, n, rng.choice(SHOWS), rng.choice(STATUSES)))
                sessions.append((n, client))

        for n in range(USERS // 2):
            await login(n)

        received: list[bytes] = []
        factory = xmlstream.XmlStreamFactory(component.ConnectComponentAuthenticator(server.component, server.secret))
        ready: defer.Deferred = defer.Deferred()

        def connected(xs):
            xs.rawDataInFn = received.append

        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, connected)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready.callback)
        recorder = await TCP4ClientEndpoint(reactor, "127.0.0.1", server.componentPort).connect(factory)
        await ready

        for n in range(USERS // 2, USERS):
            await login(n)
        await task.deferLater(reactor, 0.5, lambda: None)
        for n, client in rng.sample(sessions, len(sessions) // 2):
            client.manager.send(presence(rng, n, rng.choice(SHOWS), rng.choice(STATUSES)))
        leaving = rng.sample(sessions, len(sessions) // 4)
        for n, client in leaving:
            if rng.random() < 0.5:
                client.unavailable(status=rng.choice(["Gone home", "Bye", None]))
                await task.deferLater(reactor, 0.02, lambda: None)
                await client.disconnect()
            else:
                client.drop()
            sessions.remove((n, client))
        for n, _ in leaving[: len(leaving) // 2]:
            client = await SandboxClient(reactor, f"{users[n]}/back", PASSWORD, server.c2sPort).connect()
            client.manager.send(presence(rng, n, None, "Back again"))
            sessions.append((n, client))
        await task.deferLater(reactor, 1.0, lambda: None)

        afterHandshake = b"".join(received).partition(b"<handshake/>")[2]
        recording = [s for s in stanzas(afterHandshake) if s.startswith("<presence")]
        online = len({n for n, _ in sessions})
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({
            "server": "Prosody " + subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "prosody"],
                                                  capture_output=True, text=True).stdout,
            "domain": server.domain, "component": server.component, "users": USERS,
            "online_at_end": online, "stanzas": recording,
        }, indent=1, ensure_ascii=False) + "\n")
        print(f"recorded {len(recording)} presence stanzas of {USERS} users ({online} online at the end) "
              f"in {output}")
        for _, client in sessions:
            await client.disconnect()
        recorder.transport.loseConnection()
    finally:
        server.cleanup()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "recorded" / "prosody.json"
    task.react(lambda reactor: defer.ensureDeferred(record(reactor, target)))
