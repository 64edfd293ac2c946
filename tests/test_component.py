"""
Tests for L{presenced.component}: privileges, roster reads, resource
checks, and replies only from the address asked.
"""

import re

import pytest
from twisted.logger import LogLevel, capturedLogs

from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.component import RosterUnavailable

from xmpphelpers import COMPONENT, DOMAIN, Link


@pytest.fixture
def link():
    return Link()


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
