"""
Client mode against a real Prosody: presenced logs in as an ordinary
account and serves the users who added it.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.words.protocols.jabber.jid import JID

from presenced.config import fromString
from presenced.presence import State
from presenced.service import PresenceService
from presenced.tap import buildService

from conftest import PASSWORD, until


def clientSettings(world, account: str, extra: str = "") -> str:
    return f"""
[xmpp]
mode = client
jid = {account}/presenced
secret = {PASSWORD}
host = 127.0.0.1
port = {world.server.c2sPort}
tls = off
{extra}

[http]
listen = tcp:{world.port}:interface=127.0.0.1

[presence]
public = true
"""


async def startClientMode(world, account: str, extra: str = "") -> PresenceService:
    world.service = buildService(fromString(clientSettings(world, account, extra)), reactor)
    world.service.startService()
    await until(lambda: world.service.link.connected)
    return world.service


async def shareWith(world, bot: str, user: str, status: str):
    """
    Log C{user} in with C{status} and have them add the account C{bot};
    once presenced serves that status, their client.
    """
    sharing = await world.login(user)
    sharing.available(status=status)
    sharing.subscribe(bot)
    await world.waitForText(f"jid={user}", status)
    return sharing


@pytest_twisted.ensureDeferred
async def test_consentingUserIsServed(world):
    """
    A user who adds the account is served; one who did not is forbidden;
    one who removes it again is forbidden from then on.
    """
    bot, sharer, stranger = world.user("bot"), world.user("sharer"), world.user("stranger")
    await startClientMode(world, bot)
    sharing = await world.login(sharer)
    sharing.available(show="dnd", status="Shared with the web")
    other = await world.login(stranger)
    other.available(status="Private")

    assert await world.text(f"jid={sharer}") == "Forbidden"
    sharing.subscribe(bot)
    await world.waitForText(f"jid={sharer}", "Shared with the web")
    assert await world.text(f"jid={stranger}") == "Forbidden"
    assert world.service.mode.contacts.contacts == {sharer}

    sharing.available(show="chat", status="Still shared")
    await world.waitForText(f"jid={sharer}", "Still shared")

    sharing.presence.unsubscribed(JID(bot))
    await world.waitForText(f"jid={sharer}", "Forbidden")


@pytest_twisted.ensureDeferred
async def test_nonContactPresenceIsNotTracked(world):
    """
    A user of an allowed domain who is not a contact and sends presence
    to the account is neither shown nor tracked.
    """
    bot, sharer, stranger = world.user("bot"), world.user("sharer"), world.user("stranger")
    await startClientMode(world, bot)
    sharing = await shareWith(world, bot, sharer, "Before")

    pushing = await world.login(stranger)
    pushing.presence.available(entity=JID(bot), statuses={None: "Let me in"})
    await pushing.rosterItems()
    sharing.available(status="After")
    await world.waitForText(f"jid={sharer}", "After")
    assert await world.text(f"jid={stranger}") == "Forbidden"
    assert world.service.tracker.shown(stranger).state is State.OFFLINE
    assert world.service.health()[1]["users_online"] == 1


@pytest_twisted.ensureDeferred
async def test_forgedRosterPushRefusedQuietly(world):
    """
    A malformed roster push that another user sends to the account's full
    JID is answered with an error, and logs no error.
    """
    bot, stranger = world.user("bot"), world.user("stranger")
    await startClientMode(world, bot)
    forging = await world.login(stranger)
    answers = []
    forging.manager.xmlstream.addObserver("/iq[@id='forged']", answers.append)
    with capturedLogs() as events:
        forging.manager.send(f"<iq type='set' id='forged' to='{bot}/presenced'>"
                             "<query xmlns='jabber:iq:roster'><item/></query></iq>")
        await until(lambda: answers)
    assert answers[0]["type"] == "error"
    assert [e for e in events if e.get("isError") or e.get("log_failure")] == []


async def answeredSubscription(client, account: str):
    """
    Ask for C{account}'s presence and wait for the answer: C{client}'s
    roster item for it once no longer pending.
    """
    client.subscribe(account)
    for _ in range(100):
        items = await client.rosterItems()
        if account in items and not items[account].pendingOut:
            return items[account]
        await task.deferLater(reactor, 0.05)
    raise AssertionError("the account never answered the subscription request")


@pytest_twisted.ensureDeferred
async def test_otherDomainsAreRefused(world):
    """
    A subscription request from a domain that is not allowed is refused.
    """
    bot, sharer = world.user("bot"), world.user("sharer")
    await startClientMode(world, bot, extra="allow_domains = elsewhere.example")
    sharing = await world.login(sharer)
    sharing.available(status="Hi")
    assert not (await answeredSubscription(sharing, bot)).subscriptionTo
    assert await world.text(f"jid={sharer}") == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_fullRosterRefusesNewUsers(world):
    """
    With max_contacts users in the account's roster, a new user's
    subscription request is refused, and they are not served.
    """
    bot, first, second = world.user("bot"), world.user("first"), world.user("second")
    await startClientMode(world, bot, extra="max_contacts = 1")
    sharing = await world.login(first)
    sharing.available(status="First")
    assert (await answeredSubscription(sharing, bot)).subscriptionTo
    await world.waitForText(f"jid={first}", "First")

    late = await world.login(second)
    late.available(status="Second")
    assert not (await answeredSubscription(late, bot)).subscriptionTo
    assert await world.text(f"jid={second}") == "Forbidden"


@pytest_twisted.ensureDeferred
async def test_consentSurvivesRestart(world):
    """
    After presenced logs in again, contacts who consented before are
    served from the roster without asking again.
    """
    bot, sharer = world.user("bot"), world.user("sharer")
    service = await startClientMode(world, bot)
    await shareWith(world, bot, sharer, "Before restart")
    await service.stopService()
    await until(lambda: not service.link.connected)

    await startClientMode(world, bot)
    await world.waitForText(f"jid={sharer}", "Before restart")


@pytest.fixture
def tls_world():
    from conftest import World
    from presenced.sandbox.prosody import Prosody

    server = Prosody(tls=True)
    server.start()
    world = World(server)
    yield world
    pytest_twisted.blockon(defer.ensureDeferred(world.close()))
    server.cleanup()


def tlsSettings(world, account: str, caFile: str | None) -> str:
    text = clientSettings(world, account).replace("tls = off", "tls = required")
    if caFile:
        text = text.replace("[http]", f"ca_file = {caFile}\n\n[http]")
    return text


@pytest_twisted.ensureDeferred
async def test_loginOverVerifiedTLS(tls_world):
    """
    With tls = required, presenced logs in over STARTTLS after verifying
    the server's certificate against ca_file.
    """
    world = tls_world
    bot = world.user("bot")
    world.service = buildService(fromString(tlsSettings(world, bot, str(world.server.certificate))), reactor)
    world.service.startService()
    await until(lambda: world.service.link.connected)
    assert ISSLTransport.providedBy(world.service.connection.xmlstream.transport)


@pytest_twisted.ensureDeferred
async def test_everyCertificateOfTheCABundleIsTrusted(tls_world, tmp_path):
    """
    Every certificate of a ca_file bundle is trusted, not only the first:
    the login verifies with the server's CA second in the bundle.
    """
    from presenced.sandbox.certificates import selfSigned

    world = tls_world
    bot = world.user("bot")
    otherCA, _ = selfSigned("other-ca.test", tmp_path)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(otherCA.read_bytes() + world.server.certificate.read_bytes())
    world.service = buildService(fromString(tlsSettings(world, bot, str(bundle))), reactor)
    world.service.startService()
    await until(lambda: world.service.link.connected)
    assert ISSLTransport.providedBy(world.service.connection.xmlstream.transport)


@pytest_twisted.ensureDeferred
async def test_untrustedCertificateRefused(tls_world):
    """
    A server certificate that does not verify stops the login; nothing is
    sent in the clear.
    """
    world = tls_world
    bot = world.user("bot")
    with capturedLogs() as events:
        world.service = buildService(fromString(tlsSettings(world, bot, None)), reactor)
        world.service.startService()
        await until(lambda: any("certificate verify failed" in formatEvent(e) for e in events), timeout=15)
    assert not world.service.link.connected


@pytest_twisted.ensureDeferred
async def test_clientModeSurvivesServerRestart(fresh_world):
    """
    In client mode too, presence is forgotten when the server goes away
    (consenting users look offline), health turns 503, and presenced logs
    in again by itself.
    """
    world = fresh_world
    bot, sharer = world.user("bot"), world.user("sharer")
    await startClientMode(world, bot)
    sharing = await world.login(sharer)
    sharing.available(status="Before")
    sharing.subscribe(bot)
    await world.waitForText(f"jid={sharer}", "Before")
    assert world.service.health()[0] is True

    world.server.stop()
    await until(lambda: not world.service.link.connected)
    assert await world.text(f"jid={sharer}") == "Unavailable"
    assert world.service.health()[0] is False

    world.server.start()
    await until(lambda: world.service.link.connected, timeout=20)
    again = await world.login(sharer, "again")
    again.available(status="After")
    await world.waitForText(f"jid={sharer}", "After")


@pytest_twisted.ensureDeferred
async def test_loginOverDirectTLS(tls_world):
    """
    With tls = direct, presenced speaks TLS from the first byte (XEP-0368).
    """
    world = tls_world
    bot = world.user("bot")
    settings = tlsSettings(world, bot, str(world.server.certificate)).replace(
        "tls = required", "tls = direct").replace(f"port = {world.server.c2sPort}",
                                                  f"port = {world.server.directTLSPort}")
    world.service = buildService(fromString(settings), reactor)
    world.service.startService()
    await until(lambda: world.service.link.connected)
    assert ISSLTransport.providedBy(world.service.connection.xmlstream.transport)


@pytest_twisted.ensureDeferred
async def test_clientModeReload(world, tmp_path):
    """
    A reload with changed account settings logs in again with them; one
    that switches to component mode is refused.
    """
    bot = world.user("bot")
    path = tmp_path / "presenced.ini"
    path.write_text(clientSettings(world, bot))
    world.service = buildService(fromString(path.read_text()), reactor, configPath=str(path))
    world.service.startService()
    await until(lambda: world.service.link.connected)
    assert world.service.connection.xmlstream.authenticator.jid.resource == "presenced"

    path.write_text(clientSettings(world, bot).replace(f"jid = {bot}/presenced", f"jid = {bot}/renamed"))
    assert await world.service.reload() is True
    await until(lambda: world.service.link.connected
                and world.service.connection.xmlstream.authenticator.jid.resource == "renamed")

    path.write_text(world.settings())
    assert await world.service.reload() is False
    assert world.service.settings.xmpp.mode == "client"
