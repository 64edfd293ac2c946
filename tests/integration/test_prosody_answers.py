"""
The JSON, batch and badge answers against a real Prosody: real clients
change their presence, and real HTTP requests see it.
"""

from __future__ import annotations

import calendar
import json
import time
from urllib.parse import quote
from xml.dom import minidom
from xml.etree import ElementTree

import pytest_twisted
from twisted.web.client import readBody

from presenced.presence import State

from conftest import until

SVG = "{http://www.w3.org/2000/svg}"


async def statuses(world, query: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{world.port}/plugins/presence/statuses?{query}".encode()
    response = await world.agent.request(b"GET", url)
    return response.code, await readBody(response)


async def answer(world, query: str) -> dict:
    got = await world.get(query + "&type=json")
    assert (got.code, got.header("content-type")) == (200, "application/json; charset=utf-8")
    return json.loads(got.body)


@pytest_twisted.ensureDeferred
async def test_idleTimeOfARealClientShows(world):
    """
    A real client's XEP-0319 idle time, with an offset, shows as
    idle_since in UTC; the presence's arrival as since.
    """
    alice = world.user("alice")
    await world.start()
    client = await world.login(alice, "laptop")
    before = time.time()
    client.manager.send("<presence><show>away</show><status>Gone for tea</status>"
                        "<idle xmlns='urn:xmpp:idle:1' since='2026-12-02T20:00:05.250+01:00'/></presence>")
    await world.waitForText(f"jid={alice}", "Gone for tea")
    body = await answer(world, f"jid={alice}")
    assert (body["state"], body["status"], body["idle_since"], body["last_seen"]) == (
        "away", "Gone for tea", "2026-12-02T19:00:05Z", None)
    since = calendar.timegm(time.strptime(body["since"], "%Y-%m-%dT%H:%M:%SZ"))
    assert int(before) <= since <= time.time()


@pytest_twisted.ensureDeferred
async def test_lastSeenAppearsWhenAUserLogsOut(world):
    """
    A user who logs out is offline with their last status, and last_seen
    says when they left.
    """
    bob = world.user("bob")
    await world.start()
    client = await world.login(bob)
    client.available(status="Here")
    await world.waitForText(f"jid={bob}", "Here")
    assert (await answer(world, f"jid={bob}"))["last_seen"] is None
    client.unavailable(status="Off to bed")
    await world.waitForText(f"jid={bob}", "Off to bed")
    after = time.time()
    body = await answer(world, f"jid={bob}")
    assert (body["state"], body["status"]) == ("offline", "Off to bed")
    lastSeen = calendar.timegm(time.strptime(body["last_seen"], "%Y-%m-%dT%H:%M:%SZ"))
    assert after - 30 <= lastSeen <= after
    assert body["since"] == body["last_seen"]


@pytest_twisted.ensureDeferred
async def test_lastSeenOffAgainstARealServer(world):
    """
    With last_seen = false, a user who logged out shows no time at all.
    """
    carol = world.user("carol")
    await world.start(extra="last_seen = false")
    client = await world.login(carol)
    client.available(status="Here")
    await world.waitForText(f"jid={carol}", "Here")
    client.unavailable(status="Bye")
    await world.waitForText(f"jid={carol}", "Bye")
    body = await answer(world, f"jid={carol}")
    assert (body["state"], body["status"], body["since"], body["last_seen"]) == ("offline", "Bye", None, None)


@pytest_twisted.ensureDeferred
async def test_statusesOfRealUsers(world):
    """
    statuses answers for several real users at once, an unknown one and
    one on another domain among them.
    """
    dave, erin = world.user("dave"), world.user("erin")
    await world.start()
    daveClient, erinClient = await world.login(dave), await world.login(erin)
    daveClient.available(show="dnd", status="Busy")
    erinClient.available(show="chat")
    await world.waitForText(f"jid={dave}", "Busy")
    await world.waitForText(f"jid={erin}", "Free to chat")
    unknown = f"nobody-{dave}"
    code, body = await statuses(world, "&".join(
        f"jid={quote(jid)}" for jid in [dave.upper(), erin, unknown, "frank@elsewhere.test", dave]))
    assert code == 200
    entries = json.loads(body)
    assert list(entries) == [dave, erin, unknown, "frank@elsewhere.test"]
    assert [(entry["state"], entry["status"]) for entry in entries.values()] == [
        ("dnd", "Busy"), ("chat", None), ("offline", None), ("forbidden", None)]
    assert entries[dave] == await answer(world, f"jid={dave}")


@pytest_twisted.ensureDeferred
async def test_badgeOfAHostileStatusIsWellFormed(world):
    """
    A real client's hostile status (markup, control characters) is
    shown as text in a well-formed SVG badge.
    """
    mallory = world.user("mallory")
    await world.start()
    client = await world.login(mallory)
    client.manager.send("<presence><show>xa</show>"
                        "<status>&lt;/text&gt;&lt;script&gt;alert(1)&lt;/script&gt;\t&amp;\nend</status></presence>")
    await until(lambda: world.service.tracker.shown(mallory).state is State.XA)
    badge = await world.get(f"jid={mallory}&type=svg&message=status&label=mallory")
    assert badge.header("content-type") == "image/svg+xml; charset=utf-8"
    assert badge.header("x-content-type-options") == "nosniff"
    minidom.parseString(badge.body)
    svg = ElementTree.fromstring(badge.body)
    texts = [text.text for text in svg.iter(SVG + "text")]
    assert texts == ["mallory", "</text><script>alert(1)</script> & end"]
    assert svg.findtext(SVG + "title") == "mallory: </text><script>alert(1)</script> & end"
    assert [rect.get("fill") for rect in svg.iter(SVG + "rect")][1:] == ["#555", "#fe7d37"]
