"""
Tests for L{presenced.client}: client-mode login choices and consent.
"""

import base64
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest
from twisted.internet import task
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import sasl, xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.test.helpers import XmlStreamStub
from zope.interface import directlyProvides

from presenced.ratelimit import Limits
from presenced.presence import OFFLINE, PresenceTracker, State
from presenced.client import AccountAuthenticator, ConsentKeeper, ContactRoster, _SafeSASLInitializer


def initializer(tls: str, offered: list[str], encrypted: bool) -> _SafeSASLInitializer:
    authenticator = AccountAuthenticator(JID("bot@example.test/web"), "pw", tls, None)
    xs = xmlstream.XmlStream(authenticator)
    xs.transport = StringTransport()
    if encrypted:
        directlyProvides(xs.transport, ISSLTransport)
    features = domish.Element((sasl.NS_XMPP_SASL, "mechanisms"))
    for name in offered:
        features.addElement("mechanism", content=name)
    xs.features = {(sasl.NS_XMPP_SASL, "mechanisms"): features}
    return _SafeSASLInitializer(xs)


def sentAuth(init: _SafeSASLInitializer) -> ElementTree.Element:
    """
    Start the initializer; the C{<auth/>} it sends.
    """
    init.start()
    return lastSent(init.xmlstream)


def lastSent(xs: xmlstream.XmlStream) -> ElementTree.Element:
    """
    The element last written to C{xs}'s transport, parsed; the transport is
    cleared.
    """
    element = ElementTree.fromstring(xs.transport.value())
    xs.transport.clear()
    return element


def test_plainInsideTLS():
    """
    PLAIN is used inside TLS, even when DIGEST-MD5 is offered too.
    """
    auth = sentAuth(initializer("required", ["DIGEST-MD5", "PLAIN"], encrypted=True))
    assert auth.get("mechanism") == "PLAIN"
    assert base64.b64decode(auth.text) == b"\x00bot\x00pw"


@pytest.mark.parametrize("tls", ["required", "optional"])
def test_noPasswordInTheClear(tls):
    """
    Without TLS, no mechanism is acceptable unless TLS is switched off,
    and nothing is sent.
    """
    init = initializer(tls, ["DIGEST-MD5", "PLAIN"], encrypted=False)
    with pytest.raises(sasl.SASLNoAcceptableMechanism):
        init.start()
    assert init.xmlstream.transport.value() == b""


def test_plainWhenTLSIsOff():
    """
    With tls = off (loopback only), PLAIN is used without TLS.
    """
    auth = sentAuth(initializer("off", ["PLAIN"], encrypted=False))
    assert auth.get("mechanism") == "PLAIN"


def test_tlsInitializerRequiredUnlessOff():
    """
    STARTTLS is required by default, optional or skipped as configured.
    """
    for tls, expected in [("required", True), ("optional", False), ("off", None)]:
        xs = xmlstream.XmlStream(AccountAuthenticator(JID("bot@example.test"), "pw", tls, None))
        xs.authenticator.associateWithStream(xs)
        found = [i.required for i in xs.initializers if isinstance(i, xmlstream.TLSInitiatingInitializer)]
        assert found == ([] if expected is None else [expected])


def keeper(domains=frozenset({"example.test"}), clock=None, maxContacts=10_000, limits=None):
    roster = ContactRoster(domains, PresenceTracker(), maxContacts)
    consent = ConsentKeeper(roster, clock or task.Clock(), limits)
    stub = XmlStreamStub()
    consent.parent = SimpleNamespace(send=stub.xmlstream.send)
    consent.makeConnection(stub.xmlstream)
    return roster, consent, stub


def test_subscriptionFromAllowedDomainApprovedAndReturned():
    """
    A user of an allowed domain who asks for the account's presence is
    approved and asked for theirs.
    """
    roster, consent, stub = keeper()
    consent.subscribeReceived(JID("alice@example.test"))
    assert [(e["type"], e["to"]) for e in stub.output] == [
        ("subscribed", "alice@example.test"), ("subscribe", "alice@example.test")]


def test_subscriptionFromOtherDomainRefused():
    """
    Anyone else is refused.
    """
    roster, consent, stub = keeper()
    consent.subscribeReceived(JID("mallory@elsewhere.test"))
    assert [(e["type"], e["to"]) for e in stub.output] == [("unsubscribed", "mallory@elsewhere.test")]


def test_refusedSubscriptionsLoggedAtMostOnceAMinute():
    """
    Anyone can send subscription requests; refusals are logged at most
    once a minute, with the number left out.
    """
    clock = task.Clock()
    roster, consent, stub = keeper(clock=clock)
    with capturedLogs() as events:
        for number in range(50):
            consent.subscribeReceived(JID(f"mallory{number}@elsewhere.test"))
        clock.advance(60)
        consent.subscribeReceived(JID("eve@elsewhere.test"))
    assert [e["suppressed"] for e in events] == [0, 49]
    assert len(stub.output) == 51


def test_subscriptionsRefusedWhenTheRosterIsFull():
    """
    Once the roster holds max_contacts entries with a subscription, new
    users' requests are refused, with a warning at most once a minute;
    users already in it, or new ones once there is room again, are
    approved.
    """
    from wokkel.xmppim import RosterItem, RosterRequest

    limits = Limits(task.Clock())
    counted = []
    limits.counted = counted.append
    roster, consent, stub = keeper(maxContacts=2, limits=limits)
    alice = JID("alice@example.test")
    roster.load({alice: RosterItem(alice, subscriptionTo=True, subscriptionFrom=True)})
    with capturedLogs() as events:
        for user in ("bob", "carol", "dave", "alice"):
            consent.subscribeReceived(JID(f"{user}@example.test"))
    assert [(e["type"], e["to"]) for e in stub.output] == [
        ("subscribed", "bob@example.test"), ("subscribe", "bob@example.test"),
        ("unsubscribed", "carol@example.test"), ("unsubscribed", "dave@example.test"),
        ("subscribed", "alice@example.test"), ("subscribe", "alice@example.test"),
    ]
    assert [e["user"] for e in events if e["log_level"] == LogLevel.warn] == ["carol@example.test"]
    assert counted == ["max_contacts", "max_contacts"]

    push = RosterRequest()
    push.item = RosterItem(alice)
    push.item.remove = True
    roster.removeReceived(push)
    consent.subscribeReceived(JID("carol@example.test"))
    assert (stub.output[-2]["type"], stub.output[-2]["to"]) == ("subscribed", "carol@example.test")


def test_contactsAreWhosePresenceIsReceived():
    """
    Contacts of allowed domains with a subscription to or both consent;
    from, none, other domains and removed items do not.
    """
    from wokkel.xmppim import RosterItem, RosterRequest

    roster, _, _ = keeper()
    items = {
        JID("both@example.test"): RosterItem(JID("both@example.test"), subscriptionTo=True, subscriptionFrom=True),
        JID("to@example.test"): RosterItem(JID("to@example.test"), subscriptionTo=True),
        JID("from@example.test"): RosterItem(JID("from@example.test"), subscriptionFrom=True),
        JID("x@elsewhere.test"): RosterItem(JID("x@elsewhere.test"), subscriptionTo=True),
    }
    roster.load(items)
    assert roster.contacts == {"both@example.test", "to@example.test"}
    push = RosterRequest()
    push.item = RosterItem(JID("to@example.test"), subscriptionTo=False)
    roster.setReceived(push)
    push.item = RosterItem(JID("both@example.test"))
    push.item.remove = True
    roster.removeReceived(push)
    assert roster.contacts == set()
    assert roster.mayView("both@example.test", None) is False


class ClientLink:
    """
    presenced in client mode, logged in over an in-memory stream.
    """

    def __init__(self, extra: str = "") -> None:
        from presenced.config import fromString
        from presenced.tap import buildService

        self.clock = task.Clock()
        self.service = buildService(fromString(f"""
[xmpp]
mode = client
jid = bot@example.test/web
secret = pw
host = 127.0.0.1
tls = off
{extra}
[http]
listen = tcp:0:interface=127.0.0.1
[presence]
public = true
"""), self.clock)
        self.xs = self.service.connection.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.receive("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                     "from='example.test' id='s' version='1.0'>")
        self.xs.dispatch(self.xs, xmlstream.STREAM_AUTHD_EVENT)

    def receive(self, xml: str) -> None:
        self.xs.dataReceived(xml.encode("utf-8"))

    def rosterPush(self, jid: str, subscription: str) -> None:
        self.receive(f"<iq type='set' id='push-{jid}' from='bot@example.test'>"
                     f"<query xmlns='jabber:iq:roster'><item jid='{jid}' subscription='{subscription}'/>"
                     "</query></iq>")


def test_onlyContactsAreTracked():
    """
    Presence sent to the account by a user of an allowed domain who is not
    a contact is not tracked; a contact's is, until they stop sharing it.
    """
    link = ClientLink()
    link.receive("<presence from='stranger@example.test/phone'><status>Let me in</status></presence>")
    assert link.service.tracker.shown("stranger@example.test") is OFFLINE
    assert link.service.health()[1]["users_online"] == 0

    link.rosterPush("alice@example.test", "both")
    link.receive("<presence from='alice@example.test/desk'><show>dnd</show></presence>")
    assert link.service.tracker.shown("alice@example.test").state is State.DND

    link.rosterPush("alice@example.test", "from")
    assert link.service.tracker.shown("alice@example.test") is OFFLINE
    link.rosterPush("bob@example.test", "to")
    link.receive("<presence from='bob@example.test/desk'/>")
    link.rosterPush("bob@example.test", "remove")
    assert link.service.health()[1]["users_online"] == 0


def test_rosterPushFromOwnAccountAccepted():
    """
    Roster pushes that carry the account's bare JID as sender (as ejabberd
    sends them) update the contacts.
    """
    link = ClientLink()
    link.rosterPush("alice@example.test", "both")
    assert link.service.mode.contacts.contacts == {"alice@example.test"}
    assert b"type='result'" in link.transport.value()


def pushFrom(link: ClientLink, sender: str, item: str) -> list:
    """
    Receive a roster push; the events logged meanwhile.
    """
    link.transport.clear()
    with capturedLogs() as events:
        link.receive(f"<iq type='set' id='push' from='{sender}'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
    return events


@pytest.mark.parametrize("item", ["<item/>", "<item jid='a@@b'/>", "<item jid='mallory@example.test' subscription='to'/>"])
def test_rosterPushFromAnyoneElseRefusedUnread(item):
    """
    A roster push from anyone but the account is refused without being
    read, so that even a malformed one logs nothing.
    """
    link = ClientLink()
    assert pushFrom(link, "mallory@example.test/x", item) == []
    assert b"<service-unavailable" in link.transport.value()
    assert link.service.mode.contacts.contacts == set()


@pytest.mark.parametrize("item", ["<item/>", "<item jid='a@@b'/>", "<item jid='a@b..c'/>", "",
                                  "<item jid='a@example.test'/><item jid='b@example.test'/>"])
def test_malformedRosterPushRefused(item):
    """
    A roster push from the account that cannot be read is refused as a
    bad request, and logs nothing.
    """
    link = ClientLink()
    assert pushFrom(link, "bot@example.test", item) == []
    assert b"<bad-request" in link.transport.value()


@pytest.mark.parametrize("offered,expected", [
    (["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], "SCRAM-SHA-256"),
    (["PLAIN", "SCRAM-SHA-1"], "SCRAM-SHA-1"),
])
def test_scramPreferred(offered, expected):
    """
    SCRAM is chosen when offered, the strongest hash first, TLS or not.
    """
    assert sentAuth(initializer("required", offered, encrypted=False)).get("mechanism") == expected


def scramServer(password="pw", signingPassword=None):
    """
    A SCRAM-SHA-256 server holding the account's C{password}; it signs its
    final message with the server key of C{signingPassword} (by default the
    same password).
    """
    import scramp

    mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
    salt, stored, serverKey, iterations = mechanism.make_auth_info(password, iteration_count=4096)
    if signingPassword is not None:
        serverKey = mechanism.make_auth_info(signingPassword, iteration_count=iterations, salt=salt)[2]
    return mechanism.make_server(lambda user: (salt, stored, serverKey, iterations))


def scramLogin(server) -> list:
    """
    Log in with SCRAM-SHA-256 against C{server}, which accepts the client's
    proof and answers with success; the outcome of the initializer's
    Deferred.
    """
    init = initializer("required", ["SCRAM-SHA-256"], encrypted=True)
    outcome = []
    init.start().addBoth(outcome.append)
    server.set_client_first(base64.b64decode(lastSent(init.xmlstream).text).decode())
    init.xmlstream.dispatch(saslElement("challenge", server.get_server_first()))
    server.set_client_final(base64.b64decode(lastSent(init.xmlstream).text).decode())
    init.xmlstream.dispatch(saslElement("success", server.get_server_final()))
    return outcome


def saslElement(name: str, content: str) -> domish.Element:
    element = domish.Element((sasl.NS_XMPP_SASL, name))
    element.addContent(base64.b64encode(content.encode()).decode())
    return element


def test_scramExchange():
    """
    A SCRAM login with a server that knows the password proves the
    password to it and succeeds: the stream restarts.
    """
    assert scramLogin(scramServer()) == [xmlstream.Reset]


def test_scramServerMustProveThePassword():
    """
    A success whose server signature is not made from the password (the
    server accepts the client's proof but signs with another password's
    key) fails the login.
    """
    [outcome] = scramLogin(scramServer(signingPassword="not-the-password"))
    assert isinstance(outcome, Failure) and outcome.check(sasl.SASLAuthError)
    assert "did not prove the password" in str(outcome.value)


@pytest.mark.parametrize("sender", ["", " from='bot@example.test'"])
def test_rosterResultOnlyFromTheAccount(sender):
    """
    The account's roster is taken only from a result that the server sent
    on the account's behalf (without C{from}, or from the account's bare
    JID); one from anyone else, even with the request's id, makes nobody a
    contact.
    """
    link = ClientLink()
    [requestID] = [part.split("id='")[1].split("'")[0]
                   for part in link.transport.value().decode().split("<iq ")[1:] if "jabber:iq:roster" in part]
    for forger in ("mallory@example.test/x", "mallory@example.test", "example.test", "bot@example.test/other"):
        link.receive(f"<iq type='result' id='{requestID}' from='{forger}'><query xmlns='jabber:iq:roster'>"
                     "<item jid='mallory@example.test' subscription='both'/></query></iq>")
    contacts = link.service.mode.contacts
    assert not contacts.mayView("mallory@example.test", None)
    link.receive(f"<iq type='result' id='{requestID}'{sender}><query xmlns='jabber:iq:roster'>"
                 "<item jid='alice@example.test' subscription='both'/></query></iq>")
    assert contacts.mayView("alice@example.test", None)


def test_rosterItemWithABadJIDIsSkipped():
    """
    An item of the account's roster whose JID cannot be read is left out;
    the rest of the roster is read.
    """
    link = ClientLink()
    [requestID] = [part.split("id='")[1].split("'")[0]
                   for part in link.transport.value().decode().split("<iq ")[1:] if "jabber:iq:roster" in part]
    with capturedLogs() as events:
        link.receive(f"<iq type='result' id='{requestID}'><query xmlns='jabber:iq:roster'>"
                     "<item jid='a@b..c' subscription='both'/><item jid='alice@example.test' subscription='both'/>"
                     "</query></iq>")
    assert link.service.mode.contacts.contacts == {"alice@example.test"}
    assert [e for e in events if e["log_level"] >= LogLevel.warn] == []
