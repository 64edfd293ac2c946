"""
Tests for L{presenced.feed}: presence stanzas from a component link into
the presence model, and their XML as the answers show it.
"""

from xml.etree import ElementTree

import pytest
from twisted.logger import LogLevel, capturedLogs

from presenced.presence import OFFLINE, State
from presenced.streamparser import NamespaceSafeElementStream

from xmpphelpers import COMPONENT, DOMAIN, Link


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


@pytest.mark.parametrize("since, expected", [
    ("2026-12-02T19:00:05Z", 1796238005.0),
    ("2026-12-02T19:00:05.123456Z", 1796238005.0),
    ("2026-12-02T20:30:05+01:30", 1796238005.0),
    ("2026-12-02T17:00:05-02:00", 1796238005.0),
])
def test_idleTimeIsRead(link, since, expected):
    """
    The XEP-0319 idle time of a presence is read, fractions dropped, and
    normalised to UTC.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'><show>away</show>"
                 f"<idle xmlns='urn:xmpp:idle:1' since='{since}'/></presence>")
    assert link.tracker.shown(f"alice@{DOMAIN}").idleSince == expected


@pytest.mark.parametrize("since", [
    "", "yesterday", "2026-12-02", "2026-12-02T19:00:05", "2026-13-02T19:00:05Z", "2026-02-30T19:00:05Z",
    "2026-12-02T24:00:05Z", "2026-12-02T19:00:60Z", "2026-12-02T19:00:05+24:00", "2026-12-02T19:00:05+01:60",
    "0000-01-01T00:00:00Z", "\u0662\u0660\u0662\u0666-12-02T19:00:05Z", "2026-12-02T19:00:05.Z",
    "2026-12-02T19:00:05." + "1" * 100 + "Z", " 2026-12-02T19:00:05Z", "2026-12-02t19:00:05z",
    "0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-23:59",
])
def test_malformedIdleTimeIsIgnored(link, since):
    """
    An idle time that is not a valid XEP-0082 date and time is ignored;
    the presence is recorded without it.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'><show>away</show>"
                 f"<idle xmlns='urn:xmpp:idle:1' since='{since}'/></presence>")
    shown = link.tracker.shown(f"alice@{DOMAIN}")
    assert (shown.state, shown.idleSince) == (State.AWAY, None)


def test_idleElementsOutsideTheIdleNamespaceAreIgnored(link):
    """
    Only an C{<idle/>} in XEP-0319's namespace gives an idle time; one
    without a C{since} gives none.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'><idle xmlns='urn:other' since='2026-12-02T19:00:05Z'/>"
                 "<idle xmlns='urn:xmpp:idle:1'/></presence>")
    assert link.tracker.shown(f"alice@{DOMAIN}").idleSince is None


def test_unavailablePresenceRecordsWhenTheUserLeft(link):
    """
    The last resource's unavailable presence records when the user was
    last seen: the time it arrived.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'/>")
    link.clock.advance(42)
    link.receive(f"<presence from='alice@{DOMAIN}/desk' type='unavailable'><status>Bye</status></presence>")
    shown = link.tracker.shown(f"alice@{DOMAIN}")
    assert (shown.state, shown.status, shown.lastSeen) == (State.OFFLINE, "Bye", link.clock.seconds())


@pytest.mark.parametrize("update, expected", [
    ("<x xmlns='vcard-temp:x:update'><photo>01B87FCD030B72895FF8E88DB57EC525450F000D</photo></x>",
     "01b87fcd030b72895ff8e88db57ec525450f000d"),
    ("<x xmlns='vcard-temp:x:update'><photo/></x>", ""),
    ("<x xmlns='vcard-temp:x:update'/>", None),
    ("<x xmlns='vcard-temp:x:update'><photo>../../etc/passwd</photo></x>", None),
    ("<x xmlns='vcard-temp:x:update'><photo>" + "a" * 41 + "</photo></x>", None),
    ("<x xmlns='urn:other'><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x>", None),
])
def test_avatarHashIsRead(link, update, expected):
    """
    The XEP-0153 avatar hash of a presence is read as lowercase hex, an
    empty C{<photo/>} as no avatar; anything that is not a SHA-1 says
    nothing.
    """
    link.receive(f"<presence from='alice@{DOMAIN}/desk'>{update}</presence>")
    assert link.tracker.shown(f"alice@{DOMAIN}").photo == expected
