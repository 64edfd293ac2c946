"""
Scale measurements of presenced's presence path, each in a fresh process:

    python bench/scale.py ingest N [store] presence stanzas/s through the
                                           real XMPP handlers and model
                                           (and the last-seen store)
    python bench/scale.py layers N         the same stream through each
                                           layer of ingestion in turn
    python bench/scale.py memory N         RSS per tracked online user
    python bench/scale.py serve N PORT     serve HTTP with N users tracked

Ingestion replays the stream a real Prosody sent a component
(C{bench/recorded/prosody.json}, made by C{bench/record.py}), repeated
with renamed users until it covers N users.  Memory and HTTP need exactly
N users online: their stanzas have the shape Prosody forwards (caps,
delay, show, status, priority, C{xml:lang}), one resource per user.
"""

from __future__ import annotations

import gc
import json
import os
import pyexpat
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.testing import StringTransport

from presenced.answers import stanzaXML
from presenced.config import fromString
from presenced.streamparser import SEPARATOR, NamespaceSafeElementStream
from presenced.tap import buildService

DOMAIN = "example.test"
COMPONENT = "presence.example.test"
SHOWS = ["", "<show>away</show>", "<show>chat</show>", "<show>dnd</show>", "<show>xa</show>"]


def settings(port: int = 0, store: str | None = None):
    return fromString(f"""
[xmpp]
jid = {COMPONENT}
secret = bench
domain = {DOMAIN}
[http]
listen = tcp:{port}:interface=127.0.0.1
[presence]
public = true
{f"store = {store}" if store else ""}
""")


def available(n: int) -> str:
    return (
        f"<presence from='user{n}@{DOMAIN}/res{n % 3}' to='{COMPONENT}' xml:lang='en'>"
        f"{SHOWS[n % len(SHOWS)]}<status>Status message of user {n}</status>"
        f"<priority>{n % 10}</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/client' "
        "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>"
        f"<delay xmlns='urn:xmpp:delay' from='{DOMAIN}' stamp='2026-11-24T02:00:00Z'/></presence>"
    )


def unavailable(n: int) -> str:
    return f"<presence type='unavailable' from='user{n}@{DOMAIN}/res{n % 3}' to='{COMPONENT}'/>"


def stream(users: int, churn: bool) -> list[bytes]:
    """
    The recorded-shape stream, in chunks as they would come off a socket.
    """
    parts = [available(n) for n in range(users)]
    if churn:
        for n in range(0, users, 4):
            parts.append(unavailable(n))
            parts.append(available(n))
    return chunked(parts)


RECORDING = Path(__file__).resolve().parent / "recorded" / "prosody.json"
_SENDER = re.compile(r"""from=(['"])([^@'"]+)@""")


def recordedStream(users: int) -> tuple[list[bytes], int, int]:
    """
    The recorded stream, repeated with renamed users to cover C{users}
    users, in chunks as they would come off a socket; with its number of
    stanzas and the users online at its end.
    """
    recording = json.loads(RECORDING.read_text())
    assert (recording["domain"], recording["component"]) == (DOMAIN, COMPONENT)
    copies = -(-users // recording["users"])
    parts = [
        _SENDER.sub(lambda m: f"from={m[1]}{m[2]}-{copy}@", stanza)
        for copy in range(copies) for stanza in recording["stanzas"]
    ]
    return chunked(parts), len(parts), copies * recording["online_at_end"]


def chunked(parts: list[str]) -> list[bytes]:
    chunks, chunk, size = [], [], 0
    for part in parts:
        chunk.append(part)
        size += len(part)
        if size > 64 * 1024:
            chunks.append("".join(chunk).encode())
            chunk, size = [], 0
    chunks.append("".join(chunk).encode())
    return chunks


STREAM_HEAD = (f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
               f"from='{COMPONENT}' id='bench'>").encode()


def connectedService(port: int = 0, store: str | None = None):
    from twisted.internet import reactor

    service = buildService(settings(port, store), reactor)
    xs = service.connection.factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    xs.dataReceived(STREAM_HEAD + b"<handshake/>")
    return service, xs


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ingest(users: int, store: bool = False) -> dict:
    """
    The recorded stream for C{users} users through the component's
    stream, handlers and model, with the last-seen store on or off.
    With it on, the time its writer thread then takes to write what the
    stream changed is measured apart (the reactor never waits for it).
    """
    from twisted.internet import reactor

    chunks, stanzas, online = recordedStream(users)
    work = tempfile.mkdtemp(prefix="presenced-scale-")
    service, xs = connectedService(store=os.path.join(work, "last-seen.sqlite") if store else None)
    service.store.startService()
    started = time.perf_counter()
    for chunk in chunks:
        xs.dataReceived(chunk)
    seconds = time.perf_counter() - started
    assert service.tracker.onlineCount() == online, (service.tracker.onlineCount(), online)
    result = {"stanzas": stanzas, "online_users": online, "seconds": seconds, "stanzas_per_second": stanzas / seconds}
    if store:
        result["stored_users"] = len(service.tracker.offlineUsers())
        written = time.perf_counter()
        stopping = service.store.stopService()
        stopping.addBoth(lambda _: reactor.stop())
        reactor.run()
        result["store_write_seconds"] = time.perf_counter() - written
    shutil.rmtree(work)
    return result


def _nothing(*event) -> None:
    pass


def _expat(callbacks: bool):
    parser = pyexpat.ParserCreate("UTF-8", SEPARATOR)
    parser.buffer_text = True
    if callbacks:
        for event in ("StartElement", "EndElement", "CharacterData", "StartNamespaceDecl", "EndNamespaceDecl"):
            setattr(parser, event + "Handler", _nothing)
    parser.Parse(STREAM_HEAD)
    return parser.Parse


def _elementStream(serialise: bool):
    stream = NamespaceSafeElementStream()
    stream.DocumentStartEvent = _nothing
    stream.ElementEvent = stanzaXML if serialise else _nothing
    stream.parse(STREAM_HEAD)
    return stream.parse


#: Ingestion's layers, each including the ones before: a parser for each
#: pass, from what it is fed.
LAYERS = {
    "expat, no callbacks": lambda: _expat(callbacks=False),
    "expat, Python callbacks that do nothing": lambda: _expat(callbacks=True),
    "domish elements built": lambda: _elementStream(serialise=False),
    "elements built and serialised for type=xml": lambda: _elementStream(serialise=True),
    "the component stream, handlers and model": lambda: connectedService()[1].dataReceived,
}


def layers(users: int, passes: int = 2) -> dict:
    """
    Microseconds per stanza of the recorded stream for C{users} users
    through each of L{LAYERS}, each layer timed on C{passes} passes, each
    with a new parser (and model): the first pass, with a JIT still
    warming up, and the fastest.
    """
    chunks, stanzas, _ = recordedStream(users)
    result = {"stanzas": stanzas}
    for layer, start in LAYERS.items():
        times = []
        for _ in range(passes):
            parse = start()
            gc.collect()
            started = time.perf_counter()
            for chunk in chunks:
                parse(chunk)
            times.append(time.perf_counter() - started)
        result[layer] = {"first_us_per_stanza": times[0] / stanzas * 1e6,
                         "best_us_per_stanza": min(times) / stanzas * 1e6}
    return result


def memory(users: int) -> dict:
    service, xs = connectedService()
    chunks = stream(users, churn=False)
    gc.collect()
    before = rss()
    for chunk in chunks:
        xs.dataReceived(chunk)
    gc.collect()
    after = rss()  # with the stream still held, so the model cannot reuse its memory
    assert service.tracker.onlineCount() == users
    return {"users": users, "rss_delta_bytes": after - before, "bytes_per_user": (after - before) / users,
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def serve(users: int, port: int) -> None:
    from twisted.internet import reactor

    service, xs = connectedService(port)
    for chunk in stream(users, churn=False):
        xs.dataReceived(chunk)
    gc.collect()
    service.getServiceNamed("http").startService()
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    command, count = sys.argv[1], int(sys.argv[2])
    if command == "serve":
        serve(count, int(sys.argv[3]))
    elif command == "ingest":
        print(json.dumps(ingest(count, store=sys.argv[3:] == ["store"])))
    else:
        print(json.dumps({"ingest": ingest, "layers": layers, "memory": memory}[command](count)))
