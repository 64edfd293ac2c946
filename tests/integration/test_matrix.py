"""
The same checks against each real server, in each mode: Prosody and
ejabberd, as a privileged component and as a client account.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from presenced.sandbox.ejabberd import Ejabberd
from presenced.sandbox.prosody import Prosody

from conftest import World, until
from test_client_mode import shareWith, startClientMode
from test_prosody import until_subscribed
from test_vcard_avatars import PICTURE, avatarOf, publish

SERVERS = {"prosody": lambda: Prosody(modules=("vcard",)), "ejabberd": Ejabberd}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request):
    instance = SERVERS[request.param]()
    instance.start()
    yield instance
    instance.cleanup()


@pytest_twisted.async_yield_fixture
async def any_world(server):
    world = World(server)
    yield world
    await world.close()


@pytest_twisted.ensureDeferred
async def test_componentLivePresence(any_world):
    """
    As a component, a user who logs in is shown live, and offline once
    they leave.
    """
    world = any_world
    user = world.user("live")
    await world.start()
    client = await world.login(user)
    client.available(show="away", status="Matrix away")
    await world.waitForText(f"jid={user}", "Matrix away")
    client.unavailable(status="Matrix gone")
    await world.waitForText(f"jid={user}", "Matrix gone")


@pytest_twisted.ensureDeferred
async def test_componentPrivilegesGranted(any_world):
    """
    The server's privilege advertisement grants roster and presence access.
    """
    world = any_world
    await world.start()
    await until(lambda: world.service.mode.privileges.granted != {})
    granted = world.service.mode.privileges.granted
    assert granted.get("roster") in ("get", "both")
    assert granted.get("presence") in ("roster", "managed_entity")


@pytest_twisted.ensureDeferred
async def test_componentSubscribersOnly(any_world):
    """
    Subscribers-only answers follow the real roster, read with privileges.
    """
    world = any_world
    owner, fan, other = world.user("owner"), world.user("fan"), world.user("other")
    ownerClient = await world.login(owner)
    ownerClient.available()
    fanClient = await world.login(fan)
    fanClient.subscribe(owner)
    await until_subscribed(ownerClient, fan)
    await world.start(public=False)
    ownerClient.available(status="For fans")
    await until(lambda: world.service.tracker.shown(owner).status == "For fans")
    assert await world.text(f"jid={owner}&req_jid={fan}") == "For fans"
    assert await world.text(f"jid={owner}&req_jid={other}") == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_clientModeConsent(any_world):
    """
    As a client account, the users who add it are served, others are not.
    """
    world = any_world
    bot, sharer, stranger = world.user("bot"), world.user("sharer"), world.user("stranger")
    await startClientMode(world, bot)
    await shareWith(world, bot, sharer, "Shared on the matrix")
    assert await world.text(f"jid={stranger}") == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_componentAvatar(any_world):
    """
    As a component, a photo a user stores in their vCard and announces in
    presence is read from the server and served.
    """
    world = any_world
    user = world.user("pictured")
    await world.start()
    client = await world.login(user)
    publish(client, PICTURE, "image/png")
    answer = await avatarOf(world, user, PICTURE)
    assert (answer.code, answer.header("content-type")) == (200, "image/png")


@pytest_twisted.ensureDeferred
async def test_componentDroppedClientGoesOffline(any_world):
    """
    A client that drops without an unavailable presence is shown offline:
    Prosody says so at once; with ejabberd, the resource check notices.
    """
    world = any_world
    user = world.user("dropper")
    await world.start(xmpp="resource_check = 1")
    client = await world.login(user)
    client.available(status="About to vanish")
    await world.waitForText(f"jid={user}", "About to vanish")
    client.drop()
    await until(lambda: world.service.tracker.shown(user).status != "About to vanish", timeout=15)
    assert await world.text(f"jid={user}") in ("Unavailable", "Disconnected: connection closed",
                                                "Disconnected: closed")


#: What each server lets one client's stanza carry that goes over the
#: link's limits: many elements, over Twisted's 100,000 on ejabberd, whose
#: c2s listener here sets no max_stanza_size, and there also one tag of
#: 2 MiB (Prosody cuts a client off with policy-violation past 256 KiB).
OVERSIZED = {
    Prosody: ["<x xmlns='urn:x'>" + "<a/>" * 60_000 + "</x>"],
    Ejabberd: ["<x xmlns='urn:x'>" + "<a/>" * 120_000 + "</x>", "<x xmlns='urn:x' a='" + "y" * 2 * 1024 * 1024 + "'/>"],
}


@pytest_twisted.ensureDeferred
async def test_componentSkipsOversizedPresence(any_world):
    """
    A presence too large for the link, as large as the server lets
    through, is skipped: the link stays up, and others' presence is still
    shown and still followed.
    """
    world = any_world
    user, mallory = world.user("user"), world.user("mallory")
    await world.start()
    client = await world.login(user)
    client.available(status="Here")
    await world.waitForText(f"jid={user}", "Here")
    since = world.service.link.since
    malloryClient = await world.login(mallory)
    oversized = OVERSIZED[type(world.server)]
    for payload in oversized:
        malloryClient.manager.send(f"<presence><status>Huge</status>{payload}</presence>")
    malloryClient.available(status="Small again")
    await world.waitForText(f"jid={mallory}", "Small again")
    assert (world.service.link.connected, world.service.link.since) == (True, since)
    assert world.service.connection.xmlstream.skippedStanzas == len(oversized)
    assert await world.text(f"jid={user}") == "Here"
    client.available(status="Still followed")
    await world.waitForText(f"jid={user}", "Still followed")
