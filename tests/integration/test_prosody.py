"""
presenced against a real Prosody: real clients change their presence, and
real HTTP requests see it.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.logger import LogLevel, capturedLogs
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.http_headers import Headers
from io import BytesIO
from xml.etree import ElementTree

from presenced.answers import loadImages
from presenced.config import defaultImageDirectory
from presenced.presence import State

from conftest import until

IMAGES = loadImages(defaultImageDirectory())


@pytest_twisted.ensureDeferred
async def test_liveIconTextAndXml(world):
    """
    A user's presence changes are answered live as icon, text and XML.
    """
    alice = world.user("alice")
    await world.start()
    client = await world.login(alice, "laptop")
    client.available(show="away", status="At lunch")
    await world.waitForText(f"jid={alice}", "At lunch")

    icon = await world.get(f"jid={alice}")
    assert (icon.code, icon.header("content-type"), icon.body) == (200, "image/png", IMAGES[State.AWAY].data)
    assert "no-cache" in icon.header("cache-control")
    xml = await world.get(f"jid={alice}&type=xml")
    assert xml.header("content-type") == "text/xml; charset=utf-8"
    assert xml.body.startswith(f"<presence from='{alice}/laptop'".encode())
    assert b"<show>away</show><status>At lunch</status>" in xml.body

    client.available(show="chat")
    await world.waitForText(f"jid={alice}", "Free to chat")
    assert (await world.get(f"jid={alice}")).body == IMAGES[State.CHAT].data

    client.unavailable(status="Gone home")
    await world.waitForText(f"jid={alice}", "Gone home")
    assert (await world.get(f"jid={alice}")).body == IMAGES[State.OFFLINE].data
    assert (await world.get(f"jid={alice}&type=xml")).body == (
        f"<presence type='unavailable' from='{alice}'><status>Gone home</status></presence>".encode()
    )


@pytest_twisted.ensureDeferred
async def test_usersOnlineBeforeStartAreShown(world):
    """
    Users who were online before presenced connected are shown: the server
    sends their current presence when the component connects.
    """
    bob = world.user("bob")
    client = await world.login(bob)
    client.available(show="dnd", status="Focus time")
    await world.start()
    await world.waitForText(f"jid={bob}", "Focus time")
    assert (await world.get(f"jid={bob}")).body == IMAGES[State.DND].data


@pytest_twisted.ensureDeferred
async def test_droppedClientGoesOffline(world):
    """
    A client that drops its connection is shown offline.
    """
    carol = world.user("carol")
    await world.start()
    client = await world.login(carol)
    client.available(status="Here")
    await world.waitForText(f"jid={carol}", "Here")
    client.drop()
    await until(lambda: world.service.tracker.shown(carol).state is State.OFFLINE)
    assert (await world.get(f"jid={carol}")).body == IMAGES[State.OFFLINE].data


@pytest_twisted.ensureDeferred
async def test_hostilePresenceNeitherBreaksTheLinkNorTheXml(world):
    """
    A presence whose extensions carry namespace names with a space or
    with markup in them, which the server forwards as they are, neither
    drops presenced's XMPP link nor changes the structure of the XML
    answer.
    """
    mallory = world.user("mallory")
    await world.start()
    since = world.service.link.since
    client = await world.login(mallory)
    client.manager.send(
        "<presence><status>Hostile</status><x xmlns='urn:a b'/>"
        "<c xmlns=\"urn:x&apos;&gt;&lt;show&gt;chat&lt;/show&gt;&lt;x\"/></presence>")
    await world.waitForText(f"jid={mallory}", "Hostile")
    assert (world.service.link.connected, world.service.link.since) == (True, since)
    stanza = ElementTree.fromstring((await world.get(f"jid={mallory}&type=xml")).body)
    assert [child.tag for child in stanza] == ["status", "{urn:a b}x", "{urn:x'><show>chat</show><x}c"]


@pytest_twisted.ensureDeferred
async def test_mostAvailableResourceShown(world):
    """
    With two clients online, the most available one is shown; when it
    leaves, the other.
    """
    dave = world.user("dave")
    await world.start()
    phone = await world.login(dave, "phone")
    phone.available(show="xa", status="phone")
    desk = await world.login(dave, "desk")
    desk.available(show="chat", status="desk", priority=-1)
    await world.waitForText(f"jid={dave}", "desk")
    desk.unavailable()
    await world.waitForText(f"jid={dave}", "phone")


@pytest_twisted.ensureDeferred
async def test_unknownAndForeignUsers(world):
    """
    In public mode an unknown user looks offline; a user of another domain
    is forbidden.
    """
    await world.start(extra="unavailable_status = Not here")
    assert await world.text(f"jid=nobody-at-all@{world.server.domain}") == "Not here"
    assert await world.text("jid=someone@elsewhere.example") == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_subscribersOnlyWithRealRosters(world):
    """
    In subscribers-only mode, the user and their presence subscribers see
    them; others, and anonymous requests, are forbidden.
    """
    erin, frank, grace = world.user("erin"), world.user("frank"), world.user("grace")
    erinClient = await world.login(erin)
    frankClient = await world.login(frank)
    erinClient.available(status="Erin here")
    frankClient.subscribe(erin)
    await until_subscribed(erinClient, frank)
    await world.start(public=False)

    assert await world.text(f"jid={erin}&req_jid={frank}") == "Erin here"
    assert await world.text(f"jid={erin}&req_jid={erin}/any") == "Erin here"
    assert await world.text(f"jid={erin}&req_jid={grace}") == "Forbidden"
    assert await world.text(f"jid={erin}") == "Forbidden"
    assert await world.text(f"jid={frank}&req_jid={erin}") == "Forbidden"
    forbidden = await world.get(f"jid={erin}&req_jid={grace}&type=xml")
    assert forbidden.body == (
        f"<presence type='error' from='{erin}' to='{grace}'><error code='403' type='auth'>"
        "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    ).encode()


async def until_subscribed(user, subscriber: str) -> None:
    """
    Wait until C{subscriber} has a subscription to C{user}'s presence.
    """
    for _ in range(100):
        items = await user.rosterItems()
        if subscriber in items and items[subscriber].subscriptionFrom:
            return
        await task.deferLater(reactor, 0.05)
    raise AssertionError(f"{subscriber} never got a subscription")


@pytest_twisted.ensureDeferred
async def test_postAndRedirect(world):
    """
    POST works like GET, and custom images are answered with redirects.
    """
    heidi = world.user("heidi")
    await world.start()
    client = await world.login(heidi)
    client.available(show="away")
    await world.waitForText(f"jid={heidi}", "Away")
    answer = await world.get(
        "", b"POST",
        FileBodyProducer(BytesIO(f"jid={heidi}&type=text".encode())),
        Headers({b"Content-Type": [b"application/x-www-form-urlencoded"]}),
    )
    assert answer.body == b"Away"
    redirect = await world.get(f"jid={heidi}&images=https://img.example/--IMAGE--.png")
    assert (redirect.code, redirect.header("location")) == (302, "https://img.example/away.png")
    bad = await world.get(f"jid={heidi}&type=gif")
    assert (bad.code, bad.body) == (400, b"type must be image, text, xml, json, svg, shields or avatar\n")


class ChunkedBody:
    """
    A request body of unknown length, which the HTTP client sends chunked.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


@pytest_twisted.ensureDeferred
async def test_hostileRequestsOverARealSocket(world):
    """
    Over a real socket: a chunked POST is answered, a parameter in both
    query and body is a bad request, a JID stringprep cannot prepare is a
    bad request that logs nothing, and the server is named without a
    version.
    """
    judy = world.user("judy")
    await world.start()
    client = await world.login(judy)
    client.available(status="Chunked")
    await world.waitForText(f"jid={judy}", "Chunked")
    form = Headers({b"Content-Type": [b"application/x-www-form-urlencoded"]})
    chunked = await world.get("type=text", b"POST", ChunkedBody(f"jid={judy}".encode()), form)
    assert (chunked.code, chunked.body, chunked.header("server")) == (200, b"Chunked", "presenced")
    twice = await world.get(f"jid={judy}&type=text", b"POST", ChunkedBody(b"type=xml"), form)
    assert (twice.code, twice.body) == (400, b"type is given more than once\n")
    with capturedLogs() as events:
        bad = await world.get("jid=a@.")
    failures = [e for e in events if "log_failure" in e or e["log_level"] in (LogLevel.warn, LogLevel.error)]
    assert (bad.code, bad.body, failures) == (400, b"jid is not a valid JID\n", [])


@pytest_twisted.ensureDeferred
async def test_wrongSecretIsLoggedAndHttpStillAnswers(world):
    """
    A rejected component secret is logged as such; HTTP keeps answering,
    with nobody shown online.
    """
    ivan = world.user("ivan")
    client = await world.login(ivan)
    client.available(status="online")
    with capturedLogs() as events:
        await world.start(secret="not-the-secret", waitForLink=False)
        await until(lambda: any("rejected the credentials" in e.get("log_format", "") for e in events))
    assert await world.text(f"jid={ivan}") == "Unavailable"
    assert not world.service.link.connected
