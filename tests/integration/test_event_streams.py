"""
Event streams from the real presenced while real clients of a real
Prosody change their presence, directly and through the real nginx.
"""

from __future__ import annotations

import json

import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from presenced.config import fromString
from presenced.sandbox.prosody import freePort
from presenced.tap import buildService

from conftest import until
from test_proxy import Nginx


class EventReader(protocol.Protocol):
    """
    Reads a C{text/event-stream} body as it arrives.

    @ivar events: the C{(id, object)} of each presence event so far.
    @ivar comments: the comment lines so far.
    """

    def __init__(self) -> None:
        self.events: list[tuple[int, dict]] = []
        self.comments: list[str] = []
        self.retry = None
        self._buffer = b""
        self.ended: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields = {}
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "retry" in fields:
                self.retry = int(fields["retry"])
            if fields.get("event") == "presence":
                self.events.append((int(fields["id"]), json.loads(fields["data"])))

    def connectionLost(self, reason) -> None:
        self.ended.callback(None)

    async def next(self, count: int, timeout: float = 10.0) -> list[dict]:
        """
        Wait until there are C{count} events; the objects of all of them.
        """
        await until(lambda: len(self.events) >= count, timeout=timeout, interval=0.02)
        return [event for _, event in self.events]


async def openStream(url: str, headers: dict[bytes, list[bytes]] | None = None):
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    response = await agent.request(b"GET", url.encode(), Headers(headers or {}))
    reader = EventReader()
    response.deliverBody(reader)
    return response, reader


def states(events: list[dict]) -> list[tuple[str, str, str | None]]:
    return [(event["jid"], event["state"], event["status"]) for event in events]


@pytest_twisted.ensureDeferred
async def test_streamFollowsRealPresence(world):
    """
    A stream starts with one event per user, refused ones as forbidden;
    each change a real client makes is one event, a change that shows
    nothing new none, and logging out gives the offline object with
    last_seen.
    """
    alice = world.user("alice")
    client = await world.login(alice)
    client.available(show="away", status="Lunch", priority=1)
    await world.start(public=True)
    await world.waitForText(f"jid={alice}", "Lunch")

    url = (f"http://127.0.0.1:{world.port}/plugins/presence/events?jid={alice}"
           f"&jid=nobody@{world.server.domain}&jid=someone@elsewhere.test")
    response, reader = await openStream(url)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"text/event-stream; charset=utf-8"]
    assert response.headers.getRawHeaders(b"x-accel-buffering") == [b"no"]
    assert states(await reader.next(3)) == [
        (alice, "away", "Lunch"), (f"nobody@{world.server.domain}", "offline", None),
        ("someone@elsewhere.test", "forbidden", None)]
    assert reader.retry == 5000

    client.available(show="away", status="Lunch", priority=9)
    client.available(show="chat", status="Back")
    events = await reader.next(4)
    assert states(events[3:]) == [(alice, "chat", "Back")]
    assert [event_id for event_id, _ in reader.events] == [1, 2, 3, 4]

    client.unavailable(status="Gone home")
    offline = (await reader.next(5))[4]
    assert (offline["state"], offline["status"]) == ("offline", "Gone home")
    assert offline["last_seen"] is not None and offline["last_seen"].endswith("Z")


@pytest_twisted.ensureDeferred
async def test_streamThroughNginx(world):
    """
    Through the shipped nginx block, events reach the client as they
    happen, not when a buffer fills.
    """
    bob = world.user("bob")
    client = await world.login(bob)
    client.available(status="Before")
    await world.start(public=True)
    await world.waitForText(f"jid={bob}", "Before")
    nginx = Nginx(world.port)
    try:
        response, reader = await openStream(f"http://127.0.0.1:{nginx.port}/plugins/presence/events?jid={bob}")
        assert response.code == 200
        assert states(await reader.next(1)) == [(bob, "available", "Before")]
        client.available(status="After")
        assert states(await reader.next(2, timeout=2))[1] == (bob, "available", "After")
    finally:
        nginx.stop()


@pytest_twisted.ensureDeferred
async def test_lostLinkTurnsStreamsOffline(fresh_world):
    """
    When the XMPP server stops, followed users turn offline in the open
    stream; when it is back, the stream follows them again.
    """
    world = fresh_world
    carol = world.user("carol")
    await world.start(public=True)
    client = await world.login(carol)
    client.available(show="dnd")
    await world.waitForText(f"jid={carol}", "Do not disturb")
    response, reader = await openStream(f"http://127.0.0.1:{world.port}/plugins/presence/events?jid={carol}")
    assert states(await reader.next(1)) == [(carol, "dnd", None)]
    world.server.stop()
    assert (await reader.next(2))[1]["state"] == "offline"
    world.server.start()
    await until(lambda: world.service.link.connected, timeout=20)
    again = await world.login(carol, "again")
    again.available(show="chat")
    assert (await reader.next(3, timeout=15))[-1]["state"] == "chat"


@pytest_twisted.ensureDeferred
async def test_reloadThatDropsAListenerEndsItsStreams(world, tmp_path):
    """
    A reload that stops listening on a port ends the streams that came
    through it, cleanly; those of the port kept stay open and live.
    """
    alice = world.user("listenedalice")
    client = await world.login(alice)
    client.available(status="Listening")
    kept, dropped = world.port, freePort()
    settings = tmp_path / "presenced.ini"
    both = world.settings(public=True).replace(
        f"listen = tcp:{kept}:interface=127.0.0.1",
        f"listen = tcp:{kept}:interface=127.0.0.1 tcp:{dropped}:interface=127.0.0.1")
    settings.write_text(both)
    world.service = buildService(fromString(both), reactor, configPath=str(settings))
    world.service.startService()
    await until(lambda: world.service.link.connected)
    await world.waitForText(f"jid={alice}", "Listening")

    streams = [await openStream(f"http://127.0.0.1:{port}/plugins/presence/events?jid={alice}")
               for port in (kept, dropped)]
    for _, reader in streams:
        await reader.next(1)
    settings.write_text(world.settings(public=True))
    assert await world.service.reload() is True
    await until(lambda: streams[1][1].ended.called, timeout=10)
    assert world.service.events.openCount() == 1
    client.available(status="Still here")
    assert states(await streams[0][1].next(2))[1] == (alice, "available", "Still here")
