"""
Tests for the XMPP side in component mode (L{presenced.link},
L{presenced.feed}, L{presenced.component}): the handlers, fed real XML over
an in-memory stream.
"""

import re
from xml.etree import ElementTree

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.protocols.jabber.component import ConnectComponentAuthenticator

from presenced.config import ComponentSettings
from presenced.presence import OFFLINE, PresenceTracker, ResourcePresence, State
from presenced.streamparser import NamespaceSafeElementStream
from presenced.component import ComponentConnection, PrivilegeListener, RosterReader, RosterUnavailable
from presenced.feed import PresenceFeed
from presenced.link import LinkMonitor, LinkStreamFactory

DOMAIN = "example.test"
COMPONENT = "presence.example.test"


class Link:
    """
    A component link over an in-memory transport, with every handler of
    presenced attached, after a successful handshake.
    """

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.connection = ComponentConnection(self.clock, ComponentSettings(COMPONENT, "secret", "127.0.0.1", 5347, DOMAIN))
        self.monitor = LinkMonitor(self.clock)
        self.monitor.setHandlerParent(self.connection)
        self.feed = PresenceFeed(self.tracker, frozenset({DOMAIN}), self.clock)
        self.feed.setHandlerParent(self.connection)
        self.privileges = PrivilegeListener(DOMAIN, self.clock)
        self.privileges.setHandlerParent(self.connection)
        self.rosters = RosterReader(self.monitor, timeout=5)
        self.rosters.setHandlerParent(self.connection)
        self.connect()

    def connect(self) -> None:
        self.xs = self.connection.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.receive(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' from='{COMPONENT}' id='s1'>"
        )
        self.receive("<handshake/>")
        self.transport.clear()

    def receive(self, xml: str) -> None:
        self.xs.dataReceived(xml.encode("utf-8"))

    def sent(self) -> str:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data

    def drop(self) -> None:
        self.xs.connectionLost(Failure(Exception("gone")))


@pytest.fixture
def link():
    return Link()


def test_availablePresenceIsTracked(link):
    """
    An available presence from a user's resource is recorded with its
    show, status and priority, and its stanza kept without the component
    address or the stream namespace.
    """
    link.receive(
        f"<presence from='alice@{DOMAIN}/desk' to='{COMPONENT}'><show>away</show>"
        "<status>Back soon</status><priority>3</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' ver='v'/></presence>"
    )
    shown = link.tracker.shown(f"alice@{DOMAIN}")
    assert (shown.state, shown.status) == (State.AWAY, "Back soon")
    assert shown.stanza == (
        f"<presence from='alice@{DOMAIN}/desk'><show>away</show><status>Back soon</status>"
        "<priority>3</priority><c xmlns='http://jabber.org/protocol/caps' ver='v'/></presence>"
    ).encode()


def _tree(element: ElementTree.Element) -> tuple:
    """
    An element as namespace-qualified names, attributes and text, for
    comparing what two serialisations mean.
    """
    return (element.tag, sorted(element.attrib.items()), element.text, element.tail,
            [_tree(child) for child in element])


def _asClientSees(element: ElementTree.Element) -> ElementTree.Element:
    """
    A received stanza as the XML answer should mean it: the stanza's
    namespace as no namespace, in attributes as jabber:client, and without
    the elements the sender put in no namespace.
    """
    own = "{jabber:component:accept}"
    element.tag = element.tag.removeprefix(own)
    element.attrib = {name.replace(own, "{jabber:client}"): value for name, value in element.attrib.items()}
    kept, text = [], element.text or ""
    for child in list(element):
        element.remove(child)
        if child.tag.startswith("{"):
            kept.append(_asClientSees(child))
        elif child.tail and kept:
            kept[-1].tail = (kept[-1].tail or "") + child.tail
        elif child.tail:
            text += child.tail
    element.text = text or None
    element.extend(kept)
    return element


@pytest.mark.parametrize("children", [
    "<c xmlns=\"x&apos;&gt;&lt;b\"/>",
    "<c xmlns=\"urn:a\"><d xmlns=\"x&apos; evil=&apos;1\">text</d></c>",
    "<x:y xmlns:x=\"p&apos;q\" x:at=\"v&apos;&quot;&lt;\"/>",
    "<c xmlns='urn:c' xmlns:ns0='urn:a' xmlns:foo='urn:b' ns0:a='1' foo:b='2' xmlns:bar='urn:d' bar:c='3'/>",
    "<p:d xmlns:p='urn:p' xmlns:q='urn:q'><e q:x='1' p:y='2'/></p:d>",
    "<status xml:lang='en'>&lt;/status&gt;&amp;&apos;&quot;</status><e xmlns='urn:e' xmlns:s='jabber:component:accept'"
    " s:a='1'><status>deep</status></e>",
    "<status xmlns=''>fake</status>before<status>real</status><x xmlns='urn:x'><y xmlns=''/>after</x>",
    "<c xmlns='urn:c' a='tab&#9;newline&#10;return&#13;end'>text&#13;with&#10;breaks</c>",
])
def test_stanzaSerialisedFaithfully(link, children):
    """
    The kept stanza, read on its own, means exactly what was received,
    whatever the names, namespaces and values in it: a hostile stanza
    cannot add markup, and elements in no namespace, which XMPP does not
    allow, are left out so that they cannot pass for the stanza's own.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/x' to='{COMPONENT}'>{children}</presence>")
    kept = ElementTree.fromstring(link.tracker.shown(f"alice@{DOMAIN}").stanza)
    received = ElementTree.fromstring(
        f"<stream xmlns='jabber:component:accept'><presence from='alice@{DOMAIN}/x'>{children}</presence></stream>")[0]
    assert _tree(kept) == _tree(_asClientSees(received))


def test_deepStanzaKept(link):
    """
    A stanza as deep as the link takes is kept, and the kept XML is whole.
    """
    depth = NamespaceSafeElementStream.maxDepth - 2
    link.receive(f"<presence from='alice@{DOMAIN}/x'><status>Deep</status><d xmlns='urn:d'>"
                 + "<d>" * depth + "</d>" * depth + "</d></presence>")
    stanza = link.tracker.shown(f"alice@{DOMAIN}").stanza
    element, levels = ElementTree.fromstring(stanza).find("{urn:d}d"), 0
    while len(element):
        element, levels = element[0], levels + 1
    assert levels == depth


@pytest.mark.parametrize("oversized", [
    "<x xmlns='urn:x'>" + "<a/>" * 100_001 + "</x>",
    "<x xmlns='urn:x'>" + "<a>" * 100 + "</a>" * 100 + "</x>",
    "<status>" + "x" * 11 * 1024 * 1024 + "</status>",
])
def test_oversizedPresenceSkipped(link, oversized):
    """
    A presence too large for the link (too many elements, too deep, too
    many bytes) is skipped: the link stays up, everyone's presence is
    kept, and the presence after it is taken.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/x'><status>Alice here</status></presence>")
    with capturedLogs():
        link.receive(f"<presence from='mallory@{DOMAIN}/x'><status>Huge</status>{oversized}</presence>")
    link.receive(f"<presence from='bob@{DOMAIN}/x'><status>Bob here</status></presence>")
    assert link.transport.disconnecting is False
    assert [link.tracker.shown(f"{user}@{DOMAIN}").status for user in ("alice", "mallory", "bob")] == [
        "Alice here", None, "Bob here"]


def test_hugeTagInPiecesSkipped(link):
    """
    A presence with one tag larger than the link takes, arriving in
    pieces as from a socket, is skipped: the link stays up, and the
    presence after it is taken.
    """
    data = (f"<presence from='mallory@{DOMAIN}/x'><x xmlns='urn:x' a='" + "y" * 2 * 1024 * 1024 + "'/></presence>"
            f"<presence from='bob@{DOMAIN}/x'><status>Bob here</status></presence>").encode()
    with capturedLogs():
        for start in range(0, len(data), 65536):
            link.xs.dataReceived(data[start:start + 65536])
    assert link.transport.disconnecting is False
    assert link.tracker.shown(f"bob@{DOMAIN}").status == "Bob here"


def test_priorityDecidesBetweenResources(link):
    """
    Priorities are read from the stanza and break ties between resources.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/a'><status>a</status><priority>1</priority></presence>")
    link.receive(f"<presence from='alice@{DOMAIN}/b'><status>b</status><priority>9</priority></presence>")
    link.receive(f"<presence from='alice@{DOMAIN}/c'><status>c</status><priority>-5</priority></presence>")
    assert link.tracker.shown(f"alice@{DOMAIN}").status == "b"


def test_unavailableKeepsStatus(link):
    """
    An unavailable presence takes the resource offline and keeps its
    status text.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'/>")
    link.receive(f"<presence type='unavailable' from='alice@{DOMAIN}/desk'><status>Disconnected: closed</status></presence>")
    shown = link.tracker.shown(f"alice@{DOMAIN}")
    assert (shown.state, shown.status) == (State.OFFLINE, "Disconnected: closed")


def test_statusWithoutLanguagePreferred(link):
    """
    Of several status texts, the one without xml:lang is used, else the first.
    """
    link.receive(
        f"<presence from='alice@{DOMAIN}/x'><status xml:lang='de'>Weg</status>"
        "<status>Away</status></presence>"
    )
    assert link.tracker.shown(f"alice@{DOMAIN}").status == "Away"
    link.receive(
        f"<presence from='bob@{DOMAIN}/x'><status xml:lang='de'>Weg</status>"
        "<status xml:lang='fr'>Parti</status></presence>"
    )
    assert link.tracker.shown(f"bob@{DOMAIN}").status == "Weg"


@pytest.mark.parametrize("stanza", [
    "<presence from='mallory@elsewhere.test/x'/>",
    f"<presence from='{DOMAIN}'/>",
    "<presence from='not@@valid/x'/>",
    "<presence/>",
    f"<presence type='subscribe' from='alice@{DOMAIN}'/>",
    f"<presence type='probe' from='alice@{DOMAIN}/x'/>",
    f"<presence type='error' from='alice@{DOMAIN}/x'/>",
    f"<presence from='alice@{DOMAIN}'/>",
])
def test_ignoredPresence(link, stanza):
    """
    Presence from other domains, the server, unparseable senders, bare
    JIDs without a resource, and of other types changes nothing.
    """
    with capturedLogs() as events:
        link.receive(stanza)
    assert link.tracker.shown(f"alice@{DOMAIN}") is OFFLINE
    assert link.tracker.shown("mallory@elsewhere.test") is OFFLINE
    assert [e for e in events if e["log_level"] >= LogLevel.warn] == []


def test_malformedPriorityCountsAsZero(link):
    """
    A resource whose priority cannot be read counts as priority 0: it is
    shown before one of priority -1.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/o'><status>other</status><priority>-1</priority></presence>")
    link.receive(f"<presence from='alice@{DOMAIN}/b'><status>bad</status><priority>abc</priority></presence>")
    assert link.tracker.shown(f"alice@{DOMAIN}").status == "bad"


@pytest.mark.parametrize("priority,bound", [("99999", 127), ("-99999", -128)])
def test_outOfRangePriorityClamped(link, priority, bound):
    """
    An out-of-range priority counts as the nearest bound of -128..127:
    against a resource at that bound, the one received last is shown.
    """
    outOfRange = f"<status>out</status><priority>{priority}</priority>"
    atBound = f"<status>bound</status><priority>{bound}</priority>"
    for user, first, last, shown in [("alice", outOfRange, atBound, "bound"), ("bob", atBound, outOfRange, "out")]:
        link.receive(f"<presence from='{user}@{DOMAIN}/first'>{first}</presence>")
        link.clock.advance(1)
        link.receive(f"<presence from='{user}@{DOMAIN}/last'>{last}</presence>")
        assert link.tracker.shown(f"{user}@{DOMAIN}").status == shown


def test_namespaceWithSpaceKeepsTheLink(link):
    """
    An extension whose namespace name has a space in it is kept like any
    other, and the link stays up.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/x'><status>Here</status><x xmlns='urn:a b'/></presence>")
    shown = link.tracker.shown(f"alice@{DOMAIN}")
    assert (shown.status, link.transport.disconnecting) == ("Here", False)
    assert b"<x xmlns='urn:a b'/>" in shown.stanza


def test_longStatusIsCut(link):
    """
    Status texts are cut to a sane length.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/x'><status>{'x' * 5000}</status></presence>")
    assert len(link.tracker.shown(f"alice@{DOMAIN}").status) == 1024


def test_linkLossForgetsPresence(link):
    """
    When the link is lost, nobody is shown online any more.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'/>")
    link.drop()
    assert link.tracker.shown(f"alice@{DOMAIN}") is OFFLINE
    assert link.monitor.connected is False


def test_linkMonitor(link):
    """
    The link monitor knows when the stream is up and tells listeners.
    """
    changes = []
    link.monitor.listeners.append(changes.append)
    assert link.monitor.connected is True
    link.clock.advance(7)
    link.drop()
    assert (changes, link.monitor.since) == ([False], 7)


def test_privilegeAdvertisementLogged(link):
    """
    The granted privileges are recorded and logged; no warning when
    presence and roster access are granted.
    """
    with capturedLogs() as events:
        link.receive(
            f"<message from='{DOMAIN}' to='{COMPONENT}'><privilege xmlns='urn:xmpp:privilege:2'>"
            "<perm access='roster' type='get'/><perm access='presence' type='roster'/>"
            "</privilege></message>"
        )
    assert link.privileges.granted == {"roster": "get", "presence": "roster"}
    assert [e["log_level"] for e in events] == [LogLevel.info]


def test_missingPrivilegesWarned(link):
    """
    Missing presence or roster permissions are each warned about; the
    older namespace of ejabberd is understood too.
    """
    with capturedLogs() as events:
        link.receive(
            f"<message from='{DOMAIN}'><privilege xmlns='urn:xmpp:privilege:1'>"
            "<perm access='message' type='outgoing'/></privilege></message>"
        )
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 2
    assert link.privileges.granted == {"message": "outgoing"}


def test_privilegesFromElsewhereIgnored(link):
    """
    A privilege advertisement that does not come from the server is ignored.
    """
    link.receive(
        f"<message from='mallory@{DOMAIN}/x'><privilege xmlns='urn:xmpp:privilege:2'>"
        "<perm access='roster' type='both'/></privilege></message>"
    )
    assert link.privileges.granted == {}


def test_privilegesFromElsewhereWarnedAtMostOnceAMinute(link):
    """
    Anyone can send privilege advertisements; the warning about them is
    logged at most once a minute.
    """
    forged = (f"<message from='mallory@{DOMAIN}/x'><privilege xmlns='urn:xmpp:privilege:2'>"
              "<perm access='roster' type='both'/></privilege></message>")
    with capturedLogs() as events:
        for _ in range(100):
            link.receive(forged)
        link.clock.advance(60)
        link.receive(forged)
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert [e["suppressed"] for e in warnings] == [0, 99]


def test_rosterRead(link):
    """
    A privileged roster get is sent to the user's bare JID; items with a
    from or both subscription are the subscribers.
    """
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    request = link.sent()
    assert f"to='alice@{DOMAIN}'" in request and "jabber:iq:roster" in request
    assert f"from='{COMPONENT}'" in request
    iqID = request.split("id='")[1].split("'")[0]
    link.receive(
        f"<iq type='result' id='{iqID}' from='alice@{DOMAIN}' to='{COMPONENT}'>"
        "<query xmlns='jabber:iq:roster'>"
        f"<item jid='bob@{DOMAIN}' subscription='both'/>"
        f"<item jid='carol@{DOMAIN}' subscription='from'/>"
        f"<item jid='dave@{DOMAIN}' subscription='to'/>"
        f"<item jid='erin@{DOMAIN}' subscription='none' ask='subscribe'/>"
        "<item jid='@@bad' subscription='both'/>"
        "</query></iq>"
    )
    assert results == [frozenset({f"bob@{DOMAIN}", f"carol@{DOMAIN}"})]


@pytest.mark.parametrize("bad", ["a@b..c", "a@.", "", "a@@b"])
def test_rosterItemWithABadJIDIsSkipped(link, bad):
    """
    A roster item whose JID cannot be read is left out; the rest of the
    roster is read.
    """
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    [rosterID] = iqIDs(link, "jabber:iq:roster")
    link.receive(
        f"<iq type='result' id='{rosterID}' from='alice@{DOMAIN}' to='{COMPONENT}'>"
        f"<query xmlns='jabber:iq:roster'><item jid='{bad}' subscription='both'/>"
        f"<item jid='bob@{DOMAIN}' subscription='both'/></query></iq>")
    assert results == [frozenset({f"bob@{DOMAIN}"})]


def test_rosterErrorFails(link):
    """
    An error answer fails the read with RosterUnavailable.
    """
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    iqID = link.sent().split("id='")[1].split("'")[0]
    link.receive(
        f"<iq type='error' id='{iqID}' from='alice@{DOMAIN}'><error type='cancel'>"
        "<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    assert results[0].check(RosterUnavailable)
    assert "forbidden" in results[0].getErrorMessage()


def test_rosterTimeoutFails(link):
    """
    No answer within the timeout fails the read with RosterUnavailable.
    """
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    link.clock.advance(4.9)
    assert results == []
    link.clock.advance(0.2)
    assert results[0].check(RosterUnavailable)


def test_rosterWithoutLinkFailsAtOnce(link):
    """
    Without a link, a roster read fails at once and sends nothing.
    """
    link.drop()
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    assert results[0].check(RosterUnavailable)
    assert link.transport.value() == b""


class FakeConnector:
    """
    A connector that counts the connection attempts asked of it.
    """

    def __init__(self):
        self.attempts = 0

    def connect(self):
        self.attempts += 1

    def stopConnecting(self):
        pass


def timeToReconnect(clock: task.Clock, connector: FakeConnector) -> float:
    """
    Run C{clock}'s delayed calls in order until one asks C{connector} to
    connect; the time that took.
    """
    start, attempts = clock.seconds(), connector.attempts
    while connector.attempts == attempts:
        clock.advance(min(call.getTime() for call in clock.getDelayedCalls()) - clock.seconds())
    return clock.seconds() - start


def connectionFails(factory: LinkStreamFactory, connector: FakeConnector, authenticated: bool = False) -> None:
    """
    A TCP connection that factory's stream gets, optionally authenticates
    on, then loses.
    """
    xs = factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    if authenticated:
        xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
    reason = Failure(Exception("closed"))
    with capturedLogs():
        xs.connectionLost(reason)
        factory.clientConnectionLost(connector, reason)


def test_retryDelayGrowsUntilAuthenticated():
    """
    Reconnect delays grow while handshakes fail, even though TCP connects,
    are capped at a minute, and start over after a successful handshake.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    factory.jitter = 0
    connector = FakeConnector()
    delays = []
    for attempt in range(12):
        connectionFails(factory, connector)
        delays.append(timeToReconnect(clock, connector))
    assert all(later >= earlier - 1e-9 for earlier, later in zip(delays, delays[1:]))
    assert delays[0] == pytest.approx(1.0)
    assert delays[1] > delays[0]
    assert delays[-1] == pytest.approx(60)
    connectionFails(factory, connector, authenticated=True)
    assert timeToReconnect(clock, connector) == pytest.approx(1.0)


def test_rejectedSecretLogged():
    """
    A stream error not-authorized is logged as a rejected secret.
    """
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), task.Clock())
    xs = factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    with capturedLogs() as events:
        xs.dispatch(Failure(error.StreamError("not-authorized")), xmlstream.STREAM_ERROR_EVENT)
    assert [e["log_format"] for e in events if e["log_level"] == LogLevel.error] == [
        "The XMPP server rejected the credentials of {jid}"
    ]


def test_handshakeTimeout():
    """
    A server that never completes the handshake is disconnected after the
    handshake timeout.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    xs = factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    clock.advance(29)
    assert not transport.disconnecting
    with capturedLogs():
        clock.advance(2)
    assert transport.disconnecting


def test_handshakeTimerCancelledOnSuccess():
    """
    A completed handshake cancels the timeout: the connection stays open.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    xs = factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
    clock.advance(factory.handshakeTimeout + 1)
    assert not transport.disconnecting


def iqIDs(link, namespace: str) -> list[str]:
    """
    The ids of the IQ requests in C{namespace} sent since last asked.
    """
    return [part.split("id='")[1].split("'")[0] for part in link.sent().split("<iq ")[1:] if namespace in part]


def pinged(link) -> list[str]:
    """
    The addresses pinged since last asked, in order.
    """
    return [
        re.search("to='([^']*)'", part).group(1)
        for part in link.sent().split("<iq ")[1:] if "urn:xmpp:ping" in part
    ]


def onlineTracker(count: int) -> PresenceTracker:
    """
    A tracker with C{count} users online, C{user<n>@DOMAIN/desk}.
    """
    tracker = PresenceTracker()
    for number in range(count):
        tracker.available(f"user{number}@{DOMAIN}", ResourcePresence(state=State.AVAILABLE, resource="desk"))
    return tracker


@pytest.mark.parametrize("answer,online", [
    ("<iq type='result' id='{id}' from='alice@example.test/desk'/>", True),
    ("<iq type='error' id='{id}' from='alice@example.test/desk'><error type='cancel'>"
     "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", False),
    ("<iq type='error' id='{id}' from='alice@example.test/desk'><error type='cancel'>"
     "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>", True),
    (None, True),
])
def test_resourceCheck(link, answer, online):
    """
    Online resources are pinged every interval; one the server says is
    gone is shown offline, any other answer or none leaves it online.
    """
    from presenced.component import ResourceChecker

    checker = ResourceChecker(link.tracker, link.clock, interval=60, timeout=5)
    checker.setHandlerParent(link.connection)
    link.receive(f"<presence from='alice@{DOMAIN}/desk'/>")
    link.sent()
    link.clock.advance(59)
    assert iqIDs(link, "urn:xmpp:ping") == []
    link.clock.advance(1)
    [pingID] = iqIDs(link, "urn:xmpp:ping")
    if answer:
        link.receive(answer.format(id=pingID))
    link.clock.advance(5)
    assert (link.tracker.shown(f"alice@{DOMAIN}").state is not State.OFFLINE) is online


def test_resourceCheckStopsWithLink(link):
    """
    No pings are sent while the link is down, nor held back for the next
    link, which is checked one interval after it is up.
    """
    from presenced.component import ResourceChecker

    tracker = onlineTracker(1)
    ResourceChecker(tracker, link.clock, interval=60, timeout=5).setHandlerParent(link.connection)
    link.clock.advance(60)
    assert pinged(link) == [f"user0@{DOMAIN}/desk"]
    link.drop()
    link.clock.advance(120)
    assert pinged(link) == []
    link.connect()
    assert pinged(link) == []
    link.clock.advance(60)
    assert pinged(link) == [f"user0@{DOMAIN}/desk"]


def test_forgedPingErrorIgnored(link):
    """
    A ping error from anyone but the pinged resource, even with the ping's
    id, leaves the resource online; the resource's own error takes it
    offline.
    """
    from presenced.component import ResourceChecker

    ResourceChecker(link.tracker, link.clock, interval=60, timeout=5).setHandlerParent(link.connection)
    link.receive(f"<presence from='alice@{DOMAIN}/desk'/>")
    link.clock.advance(60)
    [pingID] = iqIDs(link, "urn:xmpp:ping")
    gone = ("<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    for forger in (f"mallory@{DOMAIN}/x", f"alice@{DOMAIN}/phone", f"alice@{DOMAIN}", DOMAIN):
        link.receive(f"<iq type='error' id='{pingID}' from='{forger}' to='{COMPONENT}'>{gone}")
    assert link.tracker.shown(f"alice@{DOMAIN}").state is State.AVAILABLE
    link.receive(f"<iq type='error' id='{pingID}' from='alice@{DOMAIN}/desk' to='{COMPONENT}'>{gone}")
    assert link.tracker.shown(f"alice@{DOMAIN}").state is State.OFFLINE


def test_forgedRosterResultIgnored(link):
    """
    A roster result from anyone but the user whose roster was asked for,
    even with the request's id, makes nobody a subscriber; the user's own
    result still answers the request.
    """
    results = []
    link.rosters.subscribers(f"alice@{DOMAIN}").addBoth(results.append)
    [rosterID] = iqIDs(link, "jabber:iq:roster")
    for forger in (f"mallory@{DOMAIN}/x", f"mallory@{DOMAIN}", COMPONENT):
        link.receive(f"<iq type='result' id='{rosterID}' from='{forger}' to='{COMPONENT}'>"
                     f"<query xmlns='jabber:iq:roster'><item jid='mallory@{DOMAIN}' subscription='both'/></query></iq>")
    assert results == []
    link.receive(f"<iq type='result' id='{rosterID}' from='alice@{DOMAIN}' to='{COMPONENT}'>"
                 f"<query xmlns='jabber:iq:roster'><item jid='bob@{DOMAIN}' subscription='both'/></query></iq>")
    assert results == [frozenset({f"bob@{DOMAIN}"})]


def test_requestIdsCannotBeGuessed(link):
    """
    Each IQ request has an id of 144 random bits, which no earlier id
    gives away (domish would count them up: C{H_1}, C{H_2}, ...).
    """
    for user in ("alice", "bob", "carol"):
        link.rosters.subscribers(f"{user}@{DOMAIN}")
    ids = iqIDs(link, "jabber:iq:roster")
    assert len(set(ids)) == 3
    assert all(re.fullmatch("[A-Za-z0-9_-]{24}", stanzaID) for stanzaID in ids)


def test_resourceCheckPaced(link):
    """
    A round over 10,000 online resources pings each of them once, at most
    50 in any clock step, spread over the first half of the interval.
    """
    from presenced.component import ResourceChecker

    tracker = onlineTracker(10000)
    ResourceChecker(tracker, link.clock, interval=300, timeout=5).setHandlerParent(link.connection)
    link.clock.advance(300)
    perStep = [pinged(link)]
    for _ in range(1500):
        link.clock.advance(0.1)
        perStep.append(pinged(link))
    assert max(len(step) for step in perStep) == 50
    assert sum(1 for step in perStep if step) == 200
    assert sorted(address for step in perStep for address in step) == sorted(
        f"user{number}@{DOMAIN}/desk" for number in range(10000)
    )
    link.clock.advance(149.9)
    assert pinged(link) == []


def test_resourceCheckRoundStopsWithLink(link):
    """
    A round under way stops when the link is lost: the rest of it is not
    sent, neither on the lost stream nor on the next one.
    """
    from presenced.component import ResourceChecker

    tracker = onlineTracker(10000)
    ResourceChecker(tracker, link.clock, interval=300, timeout=5).setHandlerParent(link.connection)
    link.clock.advance(300)
    assert len(pinged(link)) == 50
    link.drop()
    link.clock.advance(100)
    link.connect()
    link.clock.advance(199)
    assert pinged(link) == []


def test_resourceCheckRoundStopsWithNewInterval(link):
    """
    A new interval stops the round under way; the next round starts one
    new interval later.
    """
    from presenced.component import ResourceChecker

    tracker = onlineTracker(10000)
    checker = ResourceChecker(tracker, link.clock, interval=300, timeout=5)
    checker.setHandlerParent(link.connection)
    link.clock.advance(300)
    assert len(pinged(link)) == 50
    checker.setInterval(600)
    link.clock.advance(599)
    assert pinged(link) == []
    link.clock.advance(1)
    assert len(pinged(link)) == 50


def test_resourceGoneBeforeItsTurnNotPinged(link):
    """
    A resource that goes offline during a round, before its turn, is not
    pinged; the others are.
    """
    from presenced.component import ResourceChecker

    for number in range(60):
        link.receive(f"<presence from='user{number}@{DOMAIN}/desk'/>")
    ResourceChecker(link.tracker, link.clock, interval=300, timeout=5).setHandlerParent(link.connection)
    link.clock.advance(300)
    first = pinged(link)
    assert len(first) == 50
    later = min({f"user{number}@{DOMAIN}/desk" for number in range(60)} - set(first))
    link.receive(f"<presence type='unavailable' from='{later}'/>")
    link.clock.advance(150)
    assert len(pinged(link)) == 9


def test_resourcePingedAsStamped(link):
    """
    A resource is pinged at exactly the address the server stamped, which
    stringprep is not run over again, and its error from that address
    takes it offline.
    """
    from presenced.component import ResourceChecker

    stamped = f"alice@{DOMAIN}/\ufb01le \u216b"
    ResourceChecker(link.tracker, link.clock, interval=60, timeout=5).setHandlerParent(link.connection)
    link.receive(f"<presence from='{stamped}'/>")
    link.clock.advance(60)
    sent = link.sent()
    assert f"to='{stamped}'" in sent
    pingID = sent.split("id='")[1].split("'")[0]
    link.receive(
        f"<iq type='error' id='{pingID}' from='{stamped}' to='{COMPONENT}'><error type='cancel'>"
        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    assert link.tracker.shown(f"alice@{DOMAIN}").state is State.OFFLINE
