"""
Tests for L{presenced.events}: event streams told of presence changes.
"""

import json

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.python.failure import Failure

from presenced.access import AccessPolicy, RosterCache, ServedScope
from presenced.answers import AnswerRenderer, loadImages
from presenced.config import DEFAULT_LABELS, defaultImageDirectory, fromString
from presenced.events import EventsResource, PresenceEvents, WidgetResource
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.sign import RequesterCheck
from presenced.web import FORBIDDEN, HealthResource, StatusResource, buildSite

from webhelpers import Connection, request


class StreamRequest:
    """
    What a stream needs of a request: headers, writes, its end.
    """

    def __init__(self, host=IPv4Address("TCP", "127.0.0.1", 8080)):
        self.headers = {}
        self.written = []
        self.finished = False
        self.host = host
        self._finish = defer.Deferred()

    def getHost(self):
        return self.host

    def setHeader(self, name, value):
        self.headers[name] = value

    def write(self, data):
        assert not self.finished
        self.written.append(data)

    def notifyFinish(self):
        return self._finish

    def finish(self):
        self.finished = True
        self._finish.callback(None)

    def lose(self):
        self._finish.errback(Failure(ConnectionError("gone")))

    def events(self):
        """
        The C{(id, user, object)} of every event written, and clear them.
        """
        found = []
        for chunk in self.written:
            fields = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n") if ": " in line)
            if fields.get("event") == "presence":
                found.append((int(fields["id"]), json.loads(fields["data"])))
        self.written.clear()
        return found


def render(user, shown):
    return json.dumps({"jid": user, "state": shown.state.value, "status": shown.status}).encode()


def forbidden(user):
    return json.dumps({"jid": user, "state": "forbidden", "status": None}).encode()


class Hub:
    def __init__(self, decide=lambda user, requester: True, **options):
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.events = PresenceEvents(self.tracker, render, forbidden, lambda u, r: decide(u, r), self.clock,
                                     **options)

    def online(self, user, state=State.AVAILABLE, status=None, resource="r", priority=0):
        self.tracker.available(user, ResourcePresence(resource=resource, state=state, status=status,
                                                      priority=priority, received=self.clock.seconds()))

    def open(self, *users, refused=(), requester=None, client="192.0.2.1", host=None):
        request = StreamRequest() if host is None else StreamRequest(host)
        access = {user: user not in refused for user in users}
        self.events.open(request, access, requester, client)
        return request


@pytest.fixture
def hub():
    return Hub()


def test_streamOpensWithOneEventPerUser(hub):
    """
    A stream is an event stream that nginx passes at once, tells the
    browser when to reconnect, and starts with one event per user, ids
    increasing.
    """
    hub.online("a@example.test", State.AWAY, "Lunch")
    request = hub.open("a@example.test", "b@example.test")
    assert request.headers[b"Content-Type"] == b"text/event-stream; charset=utf-8"
    assert request.headers[b"Cache-Control"] == b"no-cache"
    assert request.headers[b"X-Accel-Buffering"] == b"no"
    assert request.written[0] == b"retry: 5000\n\n"
    assert request.events() == [
        (1, {"jid": "a@example.test", "state": "away", "status": "Lunch"}),
        (2, {"jid": "b@example.test", "state": "offline", "status": None}),
    ]


def test_changesAreSentAndNonChangesAreNot(hub):
    """
    Each change of what a followed user shows is one event; a priority
    change that leaves what is shown as it was sends nothing, and so do
    changes of users not followed.
    """
    hub.online("a@example.test", priority=1)
    request = hub.open("a@example.test")
    request.events()
    hub.online("a@example.test", priority=5)
    hub.online("c@example.test", State.DND)
    assert request.events() == []
    hub.online("a@example.test", State.DND, "Busy")
    hub.tracker.unavailable("a@example.test", "r", "Bye", 1.0)
    assert request.events() == [
        (2, {"jid": "a@example.test", "state": "dnd", "status": "Busy"}),
        (3, {"jid": "a@example.test", "state": "offline", "status": "Bye"}),
    ]


def test_lostLinkTurnsEveryoneOffline(hub):
    """
    When presence is no longer known, followed users turn offline in the
    stream; when it is back, the stream follows again.
    """
    hub.online("a@example.test")
    request = hub.open("a@example.test")
    request.events()
    hub.tracker.clear()
    hub.online("a@example.test", State.CHAT)
    assert [event["state"] for _, event in request.events()] == ["offline", "chat"]


def test_refusedUserGetsForbiddenAndNothingMore(hub):
    """
    A user the requester may not see gets the forbidden object, and no
    event when their presence changes.
    """
    request = hub.open("a@example.test", refused={"a@example.test"})
    hub.online("a@example.test", State.CHAT)
    assert request.events() == [(1, {"jid": "a@example.test", "state": "forbidden", "status": None})]


def test_keepAliveComments():
    """
    Every keep-alive interval each open stream gets a comment line.
    """
    hub = Hub(keepalive=15)
    request = hub.open("a@example.test")
    request.written.clear()
    hub.clock.advance(14)
    assert request.written == []
    hub.clock.advance(1)
    assert request.written == [b": keep-alive\n\n"]


def test_limits():
    """
    No stream opens beyond the most in all or from one client; a closed
    stream makes room.
    """
    hub = Hub(maxStreams=3, maxPerClient=2)
    first = hub.open("a@example.test", client="192.0.2.1")
    hub.open("a@example.test", client="192.0.2.1")
    assert not hub.events.room("192.0.2.1")
    assert hub.events.room("192.0.2.2")
    hub.open("a@example.test", client="192.0.2.2")
    assert not hub.events.room("192.0.2.3")
    first.lose()
    assert hub.events.room("192.0.2.1") and hub.events.openCount() == 2


def test_closedStreamIsToldNothing(hub):
    """
    A stream whose client went is no longer written to.
    """
    request = hub.open("a@example.test")
    request.lose()
    request.written.clear()
    hub.online("a@example.test")
    assert request.written == []


def test_lostSubscriptionFoundOnRecheck():
    """
    In subscribers-only mode access is checked again every roster TTL: a
    requester who lost the subscription gets the forbidden object once,
    and nothing more about that user.
    """
    allowed = {"a@example.test": True, "b@example.test": True}
    pending = []

    def decide(user, requester):
        d = defer.Deferred()
        pending.append((user, d))
        return d

    hub = Hub(decide=decide, recheckEvery=60)
    request = hub.open("a@example.test", "b@example.test", requester="fan@example.test")
    request.events()
    hub.clock.advance(60)
    allowed["a@example.test"] = False
    for user, d in pending:
        d.callback(allowed[user])
    pending.clear()
    hub.online("a@example.test", State.CHAT)
    hub.online("b@example.test", State.AWAY)
    assert [(e["jid"], e["state"]) for _, e in request.events()] == [
        ("a@example.test", "forbidden"), ("b@example.test", "away")]
    hub.clock.advance(60)
    assert [user for user, _ in pending] == ["b@example.test"]


def test_shutdownEndsStreams(hub):
    """
    Stopping the service ends every stream cleanly.
    """
    hub.events.startService()
    request = hub.open("a@example.test")
    hub.events.stopService()
    assert request.finished and hub.events.openCount() == 0


def test_streamsOfAPortNoLongerListenedOnEnd(hub):
    """
    The streams that came to a port that stopped listening end cleanly;
    a wildcard listener covers every interface; others stay open.
    """
    def at(host, port):
        return IPv4Address("TCP", host, port)

    onPort = hub.open("a@example.test", host=at("127.0.0.1", 8080))
    elsewhere = hub.open("a@example.test", host=at("127.0.0.2", 8080))
    otherPort = hub.open("a@example.test", host=at("127.0.0.1", 8081))
    hub.events.closeArrivedAt(at("127.0.0.1", 8080))
    assert (onPort.finished, elsewhere.finished, otherPort.finished) == (True, False, False)
    hub.events.closeArrivedAt(at("0.0.0.0", 8080))
    assert elsewhere.finished and not otherPort.finished
    hub.events.closeArrivedAt(IPv6Address("TCP", "::1", 8081))
    assert not otherPort.finished and hub.events.openCount() == 1


EVENTS = "/plugins/presence/events"
SETTINGS = """
[xmpp]
jid = presence.example.test
secret = s
domain = example.test
[http]
{http}
[presence]
public = {public}
"""


class Site:
    """
    The HTTP site with event streams, over a tracker, with rosters
    answered by the test.
    """

    def __init__(self, public=True, http=""):
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.fetches = {}
        rosters = RosterCache(self.fetch, self.clock, ttl=30)
        self.status = StatusResource(
            self.tracker, AccessPolicy(public, rosters),
            AnswerRenderer(loadImages(defaultImageDirectory()), dict(DEFAULT_LABELS)),
            ServedScope(frozenset({"example.test"})), RequesterCheck((), False, self.clock))
        self.events = PresenceEvents(
            self.tracker, lambda user, shown: self.status.renderer.jsonObject(shown, user),
            lambda user: self.status.renderer.jsonObject(FORBIDDEN, user), self.status.decide, self.clock)
        self.site = buildSite(self.status, HealthResource(lambda: (True, {})), self.clock,
                              {b"events": EventsResource(self.status, self.events),
                               b"widget.js": WidgetResource(self.status)})
        settings = fromString(SETTINGS.format(http=http, public="true" if public else "false"))
        self.site.reconfig(settings, loadImages(defaultImageDirectory()))

    def fetch(self, user):
        self.fetches[user] = defer.Deferred()
        return self.fetches[user]

    def stream(self, query, headers=None, peer="127.0.0.1"):
        connection = Connection(self.site, peer)
        connection.send("GET", f"{EVENTS}?{query}", headers=headers)
        return connection


def head(connection):
    """
    The status code and headers of what a connection was answered so far.
    """
    data = connection.transport.value()
    status, *lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(status.split()[1]), {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def streamed(connection):
    """
    The presence events written on a stream so far, as objects.
    """
    body = connection.transport.value().partition(b"\r\n\r\n")[2]
    return [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]


def test_streamOverHTTP():
    """
    GET events answers 200 with an event stream that any origin may read
    and that no proxy times out, starting with one event per user.
    """
    site = Site()
    site.tracker.available("a@example.test", ResourcePresence(resource="r", state=State.AWAY, status="Lunch"))
    connection = site.stream("jid=a@example.test&jid=B@example.test", {"Origin": "https://blog.example"})
    code, headers = head(connection)
    assert code == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["access-control-allow-origin"] == "*"
    assert [(e["jid"], e["state"], e["status"]) for e in streamed(connection)] == [
        ("a@example.test", "away", "Lunch"), ("b@example.test", "offline", None)]
    site.tracker.available("a@example.test", ResourcePresence(resource="r", state=State.CHAT))
    assert streamed(connection)[-1]["state"] == "chat"


@pytest.mark.parametrize("query, reason", [
    ("", b"jid is required"),
    ("jid=a@@example.test", b"jid is not a valid JID"),
    ("&".join(f"jid=u{n}@example.test" for n in range(101)), b"more than 100 different users"),
])
def test_badStreamRequests(query, reason):
    """
    A stream request without a user, with a malformed one or with more
    than 100 gets 400 naming the problem, readable cross-origin.
    """
    response = request(Site().site, "GET", f"{EVENTS}?{query}")
    assert (response.code, response.body.strip()) == (400, reason)
    assert response.headers["access-control-allow-origin"] == "*"


def test_otherMethodsRefused():
    """
    Only GET (and OPTIONS preflights) open or concern streams.
    """
    site = Site()
    assert request(site.site, "POST", f"{EVENTS}?jid=a@example.test").code == 405
    assert request(site.site, "OPTIONS", f"{EVENTS}?jid=a@example.test").code == 204


def test_preflightNamesTheMethodsOfStreams():
    """
    A preflight of the event streams names the methods they answer, as
    their 405 does, not those of the status answers.
    """
    response = request(Site().site, "OPTIONS", f"{EVENTS}?jid=a@example.test",
                       headers={"Origin": "https://blog.example", "Access-Control-Request-Method": "GET"})
    assert response.headers["allow"] == response.headers["access-control-allow-methods"] == "GET, OPTIONS"
    assert request(Site().site, "PUT", EVENTS).headers["allow"] == "GET, OPTIONS"


def test_streamsBeyondTheLimitsGet503():
    """
    Beyond max_streams_per_client from one address, or max_streams in
    all, a stream request gets 503 with Retry-After.
    """
    site = Site(http="max_streams = 3\nmax_streams_per_client = 2")
    site.stream("jid=a@example.test")
    site.stream("jid=a@example.test")
    refused = request(site.site, "GET", f"{EVENTS}?jid=a@example.test")
    assert (refused.code, refused.headers["retry-after"]) == (503, "30")
    site.stream("jid=a@example.test", peer="192.0.2.9")
    assert request(site.site, "GET", f"{EVENTS}?jid=a@example.test").code == 503


def test_subscribersOnlyStreamWaitsForRosters():
    """
    In subscribers-only mode a stream opens once the rosters it needs are
    read; a user whose roster does not list the requester is forbidden.
    """
    site = Site(public=False)
    site.tracker.available("a@example.test", ResourcePresence(resource="r", state=State.DND))
    site.tracker.available("b@example.test", ResourcePresence(resource="r", state=State.DND))
    connection = site.stream("jid=a@example.test&jid=b@example.test&req_jid=fan@example.test")
    assert connection.transport.value() == b""
    site.fetches["a@example.test"].callback(frozenset({"fan@example.test"}))
    site.fetches["b@example.test"].callback(frozenset())
    assert [(e["jid"], e["state"]) for e in streamed(connection)] == [
        ("a@example.test", "dnd"), ("b@example.test", "forbidden")]


def test_keepaliveFromSettings():
    """
    stream_keepalive sets how often open streams get a comment.
    """
    site = Site(http="stream_keepalive = 5")
    connection = site.stream("jid=a@example.test")
    site.clock.advance(5)
    assert connection.transport.value().endswith(b": keep-alive\n\n\r\n")


def test_widgetScript():
    """
    widget.js is served as JavaScript with a tag, and revalidated.
    """
    site = Site()
    first = request(site.site, "GET", "/plugins/presence/widget.js")
    assert first.code == 200
    assert first.headers["content-type"] == "application/javascript; charset=utf-8"
    assert b"data-presence-jid" in first.body
    again = request(site.site, "GET", "/plugins/presence/widget.js", headers={"If-None-Match": first.headers["etag"]})
    assert (again.code, again.body) == (304, b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_widgetScriptRefusesOtherMethodsWithAPlain405(method):
    """
    widget.js answers any method but GET and HEAD with a plain 405 naming
    them, never twisted.web's 501 page.
    """
    response = request(Site().site, method, "/plugins/presence/widget.js")
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD")
    assert (response.headers["content-type"], response.body) == (
        "text/plain; charset=utf-8", b"only GET and HEAD are allowed\n")
