"""
Tests for L{presenced.web} and L{presenced.answers}: the HTTP API, driven
through a real twisted.web site over an in-memory transport.
"""

import gc
import json
import os
import stat
from urllib.parse import quote

import pytest
from twisted.internet import address, defer, task
from twisted.logger import capturedLogs
from twisted.web import http

from presenced.access import AccessPolicy, RosterCache, ServedScope
from presenced.answers import AnswerRenderer, loadImages
from presenced.config import DEFAULT_LABELS, defaultImageDirectory
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.sign import RequesterCheck, signature, signedQuery
from presenced.web import (AccessLog, BadRequest, HealthResource, StatusResource, buildSite, combinedLogLine,
                           formArguments, parseQuery)

from webhelpers import Connection, request

DOMAIN = "example.test"
IMAGES = loadImages(defaultImageDirectory())
STATUS = "/plugins/presence/status"
KEY = b"0123456789abcdef0123456789abcdef"
OLD_KEY = b"fedcba9876543210fedcba9876543210"


class Fixture:
    """
    A site over a tracker, with rosters answered by the test.
    """

    def __init__(self, public: bool = True, keys: tuple[bytes, ...] = (), required: bool = False) -> None:
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.fetches: dict[str, defer.Deferred] = {}
        self.rosters = RosterCache(self.fetch, self.clock, ttl=30)
        self.policy = AccessPolicy(public, self.rosters)
        labels = dict(DEFAULT_LABELS)
        self.status = StatusResource(self.tracker, self.policy, AnswerRenderer(IMAGES, labels), ServedScope(frozenset({DOMAIN})),
                                     RequesterCheck(keys, required, self.clock))
        self.healthResource = HealthResource(lambda: self.health)
        self.site = buildSite(self.status, self.healthResource, self.clock)
        self.health = (True, {"xmpp": "connected"})

    def fetch(self, user):
        self.fetches[user] = defer.Deferred()
        return self.fetches[user]

    def online(self, user, resource="home", state=State.AVAILABLE, status=None):
        stanza = f"<presence from='{user}/{resource}'/>".encode()
        self.tracker.available(user, ResourcePresence(resource=resource, state=state, status=status, stanza=stanza))

    def get(self, query, method="GET"):
        if method == "POST":
            return request(self.site, "POST", STATUS, query.encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        return request(self.site, method, f"{STATUS}?{query}")


@pytest.fixture
def public():
    return Fixture(public=True)


@pytest.fixture
def private():
    return Fixture(public=False)


def test_imageOfOnlineUser(public):
    """
    The default answer is the PNG icon of the user's state, never cached.
    """
    public.online("alice@example.test", state=State.DND)
    response = public.get("jid=alice@example.test")
    assert response.code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.body == IMAGES[State.DND].data
    assert "no-cache" in response.headers["cache-control"]


@pytest.mark.parametrize("state", [State.AVAILABLE, State.CHAT, State.AWAY, State.XA, State.DND])
def test_imageForEveryOnlineState(public, state):
    """
    Each online state has its own icon.
    """
    public.online("alice@example.test", state=state)
    assert public.get("jid=alice@example.test&type=image").body == IMAGES[state].data


def test_unknownUserLooksOfflineWhenPublic(public):
    """
    In public mode a user who is not online, or does not exist, is offline.
    """
    assert public.get("jid=nobody@example.test").body == IMAGES[State.OFFLINE].data


def test_resourceInJidIsIgnored(public):
    """
    A resource in jid is ignored: the bare user's presence is answered.
    """
    public.online("alice@example.test", state=State.AWAY)
    assert public.get("jid=alice@example.test/whatever").body == IMAGES[State.AWAY].data


def test_resourceInJidIsNotChecked(public):
    """
    The resource in jid is dropped unread: even one that is not a valid
    resource gets the bare user's answer.
    """
    public.online("alice@example.test", state=State.AWAY)
    assert public.get("jid=alice@example.test/%00%E2%80%8B").body == IMAGES[State.AWAY].data


def test_jidIsNormalised(public):
    """
    jid is compared after stringprep, so case does not matter.
    """
    public.online("alice@example.test", state=State.CHAT)
    assert public.get("jid=Alice@Example.TEST").body == IMAGES[State.CHAT].data


def test_textIsStatusMessage(public):
    """
    type=text answers the user's status message as UTF-8 text.
    """
    public.online("alice@example.test", status="Café ☕ <b>")
    response = public.get("jid=alice@example.test&type=text")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == "Café ☕ <b>".encode("utf-8")


@pytest.mark.parametrize("state,label", [
    (State.AVAILABLE, "Available"), (State.CHAT, "Free to chat"), (State.AWAY, "Away"),
    (State.XA, "Extended away"), (State.DND, "Do not disturb"),
])
def test_textWithoutStatusIsLabel(public, state, label):
    """
    Without a status message, type=text answers the state's label.
    """
    public.online("alice@example.test", state=state)
    assert public.get("jid=alice@example.test&type=text").body == label.encode()


def test_textOfflineUsesLastStatus(public):
    """
    An offline user's text is the status of their last unavailable
    presence, else the configured unavailable status.
    """
    public.online("alice@example.test")
    public.tracker.unavailable("alice@example.test", "home", "Gone home", 0.0)
    assert public.get("jid=alice@example.test&type=text").body == b"Gone home"
    assert public.get("jid=bob@example.test&type=text").body == b"Unavailable"


def test_xmlOfOnlineUser(public):
    """
    type=xml answers the shown resource's presence stanza.
    """
    public.online("alice@example.test", resource="desk")
    response = public.get("jid=alice@example.test&type=xml")
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.body == b"<presence from='alice@example.test/desk'/>"


def test_xmlOfOfflineUser(public):
    """
    An offline user's XML is an unavailable presence from the bare JID,
    with the last status when known, escaped.
    """
    assert public.get("jid=bob@example.test&type=xml").body == (
        b"<presence type='unavailable' from='bob@example.test'/>"
    )
    public.online("bob@example.test")
    public.tracker.unavailable("bob@example.test", "home", "<bye> & 'so long'", 0.0)
    assert public.get("jid=bob@example.test&type=xml").body == (
        b"<presence type='unavailable' from='bob@example.test'>"
        b"<status>&lt;bye&gt; &amp; 'so long'</status></presence>"
    )


def test_otherDomainIsForbidden(public):
    """
    A user on another domain gets the forbidden answer, even in public mode.
    """
    response = public.get("jid=eve@elsewhere.test&type=text")
    assert (response.code, response.body) == (200, b"Forbidden")


def test_otherDomainIsForbiddenWhateverTheLocalPart(public):
    """
    A user on another domain gets the forbidden answer whatever the local
    part, as the XML answer, which shows the user, gets it normalised.
    """
    response = public.get("jid=e%20ve@elsewhere.test&type=text")
    assert (response.code, response.body) == (200, b"Forbidden")
    assert public.get("jid=Eve@Elsewhere.test&type=xml").body.startswith(
        b"<presence type='error' from='eve@elsewhere.test'>")
    assert public.get("jid=e%20ve@elsewhere.test&type=xml").code == 400


def test_forbiddenXml(private):
    """
    The forbidden XML is a 403 error presence from the user to the requester.
    """
    response = private.get("jid=alice@example.test&type=xml")
    assert response.body == (
        b"<presence type='error' from='alice@example.test'><error code='403' type='auth'>"
        b"<forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
    )
    connection = Connection(private.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=eve@example.test&type=xml")
    private.fetches["alice@example.test"].callback(frozenset())
    assert connection.response().body == (
        b"<presence type='error' from='alice@example.test' to='eve@example.test'>"
        b"<error code='403' type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        b"</error></presence>"
    )


def test_privateWithoutRequesterIsForbidden(private):
    """
    In subscribers-only mode, a request without req_jid is forbidden,
    without reading any roster.
    """
    private.online("alice@example.test")
    response = private.get("jid=alice@example.test")
    assert response.body == IMAGES[State.FORBIDDEN].data
    assert private.fetches == {}


def test_privateUserMaySeeThemself(private):
    """
    A user may always see their own presence.
    """
    private.online("alice@example.test", state=State.AWAY)
    assert private.get("jid=alice@example.test&req_jid=alice@example.test/phone").body == (
        IMAGES[State.AWAY].data
    )


def test_privateSubscriberMaySee(private):
    """
    A requester in the user's roster with a presence subscription is
    answered once the roster arrives.
    """
    private.online("alice@example.test", state=State.CHAT)
    connection = Connection(private.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test")
    assert connection.response() is None
    private.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    assert connection.response().body == IMAGES[State.CHAT].data


def test_headWaitsForTheRosterAndSendsNoBody(private):
    """
    A HEAD request that needs the roster is answered once it arrives, with
    the GET answer's length and no body.
    """
    private.online("alice@example.test", state=State.CHAT)
    connection = Connection(private.site)
    connection.send("HEAD", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test")
    assert connection.transport.value() == b""
    private.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    head, _, rest = connection.transport.value().partition(b"\r\n\r\n")
    assert rest == b""
    assert f"Content-Length: {len(IMAGES[State.CHAT].data)}".encode() in head.split(b"\r\n")


def test_forbiddenLooksTheSameWhateverTheReason(private):
    """
    Not subscribed, unknown user, other domain, failed roster: the same
    forbidden answer.
    """
    private.online("alice@example.test")
    answers = []
    for user, outcome in [("alice", frozenset({"carol@example.test"})), ("ghost", frozenset()),
                          ("alice2", Exception("boom"))]:
        connection = Connection(private.site)
        connection.send("GET", f"{STATUS}?jid={user}@example.test&req_jid=eve@example.test&type=text")
        d = private.fetches[f"{user}@example.test"]
        d.errback(outcome) if isinstance(outcome, Exception) else d.callback(outcome)
        answers.append(connection.response())
    answers.append(private.get("jid=alice@other.test&req_jid=eve@example.test&type=text"))
    assert {(r.code, r.body) for r in answers} == {(200, b"Forbidden")}
    assert len({tuple(sorted((k, v) for k, v in r.headers.items() if k != "date")) for r in answers}) == 1


def test_concurrentRequestsShareOneRosterFetch(private):
    """
    Concurrent requests about one user wait for the same roster fetch, and
    a later one within the TTL uses the cached roster.
    """
    first, second = Connection(private.site), Connection(private.site)
    first.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&type=text")
    second.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=carol@example.test&type=text")
    private.fetches.pop("alice@example.test").callback(frozenset({"bob@example.test"}))
    assert first.response().body == b"Unavailable"
    assert second.response().body == b"Forbidden"
    assert private.get("jid=alice@example.test&req_jid=bob@example.test&type=text").body == b"Unavailable"
    assert private.fetches == {}
    private.clock.advance(31)
    third = Connection(private.site)
    third.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&type=text")
    assert "alice@example.test" in private.fetches


def test_clientGoneBeforeRoster(private):
    """
    A client that disconnects while its roster is fetched is not written
    to, and the late answer causes no error.
    """
    connection = Connection(private.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test")
    connection.channel.connectionLost(Exception("gone"))
    with capturedLogs() as events:
        private.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
        gc.collect()
    assert connection.transport.value() == b""
    assert [e["log_format"] for e in events if "log_failure" in e] == []


def test_imagesTemplateRedirects(public):
    """
    images= redirects to the template with --IMAGE-- replaced by the state.
    """
    public.online("alice@example.test", state=State.XA)
    template = quote("https://cdn.example.org/icons/--IMAGE--.png", safe="")
    response = public.get(f"jid=alice@example.test&images={template}")
    assert response.code == 302
    assert response.headers["location"] == "https://cdn.example.org/icons/xa.png"
    assert (response.body, response.headers["content-length"]) == (b"", "0")
    assert "content-type" not in response.headers
    assert "no-cache" in response.headers["cache-control"]


def test_perStateURLOverridesTemplate(public):
    """
    A per-state URL overrides images= for that state only.
    """
    template = quote("http://img.example.org/--IMAGE--.gif", safe="")
    offline = quote("http://img.example.org/gone.png?size=16&x=y", safe="")
    response = public.get(f"jid=alice@example.test&images={template}&offline={offline}")
    assert response.headers["location"] == "http://img.example.org/gone.png?size=16&x=y"
    public.online("alice@example.test")
    response = public.get(f"jid=alice@example.test&images={template}&offline={offline}")
    assert response.headers["location"] == "http://img.example.org/available.gif"


def test_perStateURLWithoutTemplate(public):
    """
    Without images=, states with no URL of their own get the built-in icon.
    """
    dnd = quote("https://example.org/busy.png", safe="")
    assert public.get(f"jid=alice@example.test&dnd={dnd}").body == IMAGES[State.OFFLINE].data
    public.online("alice@example.test", state=State.DND)
    assert public.get(f"jid=alice@example.test&dnd={dnd}").headers["location"] == "https://example.org/busy.png"


def test_forbiddenRedirect(private):
    """
    The forbidden state can redirect too.
    """
    forbidden = quote("https://example.org/no.png", safe="")
    response = private.get(f"jid=alice@example.test&forbidden={forbidden}")
    assert (response.code, response.headers["location"]) == (302, "https://example.org/no.png")


def test_redirectsAreLimitedToTheAllowedHosts(public):
    """
    With allowed hosts, an image URL to any other host is a bad request
    naming the parameter; a *.suffix pattern allows the hosts under the
    suffix, not the suffix itself.
    """
    public.status.redirectHosts = ("img.example.org", "*.cdn.example")
    for url in ["https://img.example.org/a.png", "http://img.example.org./a.png", "https://a.b.cdn.example/a.png"]:
        response = public.get(f"jid=alice@example.test&offline={quote(url.replace('img', 'IMG'), safe='')}")
        assert (response.code, response.headers["location"]) == (302, url)
    for url in ["https://evil.example/login", "https://cdn.example/a.png", "https://img.example.org.evil/a",
                "https://evilimg.example.org/a", "https://xcdn.example/a"]:
        response = public.get(f"jid=x@elsewhere.test&forbidden={quote(url, safe='')}")
        assert (response.code, response.body) == (400, b"forbidden points to a host that is not allowed\n")
    response = public.get("jid=alice@example.test&images=" + quote("https://evil.example/--IMAGE--", safe=""))
    assert (response.code, response.body) == (400, b"images points to a host that is not allowed\n")


def test_internationalURLIsEncoded(public):
    """
    A non-ASCII URL is sent as a valid URI.
    """
    url = quote("https://bücher.example/ä/--IMAGE--.png", safe="")
    response = public.get(f"jid=alice@example.test&images={url}")
    assert response.headers["location"] == "https://xn--bcher-kva.example/%C3%A4/offline.png"


def test_postAndHeadBehaveLikeGet(public):
    """
    POST with a form body and HEAD answer like GET (HEAD without a body).
    """
    public.online("alice@example.test", status="Hello")
    assert public.get("jid=alice%40example.test&type=text", method="POST").body == b"Hello"
    response = public.get("jid=alice@example.test&type=text", method="HEAD")
    assert (response.code, response.body) == (200, b"")


def test_postCombinesBodyAndQuery(public):
    """
    A POST's query string and form body are read together: a parameter
    in both is given twice, a bad request.
    """
    public.online("alice@example.test", status="Hello")
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    response = request(public.site, "POST", f"{STATUS}?jid=alice@example.test", b"type=text", form)
    assert response.body == b"Hello"
    response = request(public.site, "POST", f"{STATUS}?jid=alice@example.test&type=text", b"type=xml", form)
    assert (response.code, response.body) == (400, b"type is given more than once\n")


def test_semicolonIsNoSeparator(public):
    """
    Only & separates parameters; a ; is part of a value.
    """
    public.online("alice@example.test", status="Hello")
    assert public.get("jid=alice@example.test&t=1;type=text").body == IMAGES[State.AVAILABLE].data
    assert public.get("jid=alice@example.test;type=text").code == 400
    assert public.get("t=1;jid=alice@example.test&type=text").code == 400


def test_formArgumentsAsTwistedWithoutSemicolons():
    """
    Without ;, parameters are read as twisted.web reads them.
    """
    import random

    rng = random.Random(3986)
    for _ in range(2000):
        query = bytes(rng.choice(b"a=&+%2F0x\xc3\xa9") for _ in range(rng.randrange(20)))
        assert formArguments(query) == http.parse_qs(query, 1)


def test_moreThan128ParametersAreABadRequest(public):
    """
    A request with more than 128 parameters (room for a batch of 100
    users), counting the query string and the form body together and
    empty ones too, is a bad request.
    """
    public.online("alice@example.test", status="Hello")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    padding = "&".join(f"p{number}=1" for number in range(126))
    assert public.get(f"jid=alice@example.test&type=text&{padding}").body == b"Hello"
    tooMany = [
        public.get(f"jid=alice@example.test&type=text&{padding}&p=1"),
        request(public.site, "POST", f"{STATUS}?jid=alice@example.test&{padding}", b"type=text&p=1", form),
        request(public.site, "POST", f"{STATUS}?jid=alice@example.test", b"&" * 65536, form),
        public.get("jid=alice@example.test" + "&" * 16000),
    ]
    assert [(r.code, r.body) for r in tooMany] == [(400, b"more than 128 parameters\n")] * 4


def test_parametersAreNotReadByTwisted(public, monkeypatch):
    """
    twisted.web's own parameter parser, which costs much more for some
    input, is not used: neither for query strings nor for form bodies.
    """
    def refuse(*args, **kwargs):
        raise AssertionError("twisted.web parsed parameters")

    monkeypatch.setattr(http, "parse_qs", refuse)
    public.online("alice@example.test", status="Hello")
    assert public.get("jid=alice@example.test&type=text").body == b"Hello"
    assert public.get("jid=alice%40example.test&type=text", method="POST").body == b"Hello"


def test_multipartBodyIsIgnoredUnread(public):
    """
    A POST body that is not form-encoded, such as a multipart one, is not
    read at all, not even when it is malformed: the query string alone
    is the request.
    """
    public.online("alice@example.test", status="Hello")
    connection = Connection(public.site)
    connection.send("POST", f"{STATUS}?jid=alice@example.test&type=text", b"not multipart at all",
                    {"Content-Type": "multipart/form-data; boundary=x"})
    assert connection.response().body == b"Hello"
    assert not connection.transport.disconnecting


def test_headAnswersTheLengthOfGetAndNothingElse(public):
    """
    A HEAD answer carries the headers of the GET answer, its length
    included, sends no body and logs nothing.
    """
    get = public.get("jid=alice@example.test")
    connection = Connection(public.site)
    with capturedLogs() as events:
        connection.send("HEAD", f"{STATUS}?jid=alice@example.test")
    head, _, rest = connection.transport.value().partition(b"\r\n\r\n")
    assert (rest, events) == (b"", [])
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert (headers["Content-Length"], headers["Content-Type"]) == (str(len(get.body)), "image/png")


def test_otherMethodsNotAllowed(public):
    """
    Methods other than GET, HEAD, POST and OPTIONS are refused.
    """
    response = public.get("jid=alice@example.test", method="DELETE")
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD, POST, OPTIONS")


def test_oversizedBodyRefused(public):
    """
    A POST body over the limit is answered with a complete 413 that says
    why, its length given, and the connection closed; it is never
    processed.
    """
    body = b"jid=alice@example.test&pad=" + b"x" * (70 * 1024)
    connection = Connection(public.site)
    connection.send("POST", STATUS, body, {"Content-Type": "application/x-www-form-urlencoded"})
    answer = connection.transport.value()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nContent-Type: text/plain; charset=utf-8\r\n" in answer
    assert b"\r\nContent-Length: 23\r\n" in answer and answer.endswith(b"\r\n\r\nrequest body too large\n")
    assert connection.transport.disconnecting


def sendChunked(connection, body: bytes, chunkSize: int = 4096) -> None:
    """
    POST C{body} to the status resource with chunked transfer encoding.
    """
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunkSize]), body[i:i + chunkSize])
                      for i in range(0, len(body), chunkSize))
    connection.channel.dataReceived(
        b"POST " + STATUS.encode() + b" HTTP/1.1\r\nHost: presence.example.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks + b"0\r\n\r\n")


def test_chunkedBodyIsKeptInMemory(public, monkeypatch):
    """
    A chunked POST body, whose length is not known in advance, is read in
    memory like any other: no temporary file is made for it.
    """
    import tempfile

    def noFiles(*args, **kwargs):
        raise OSError("no temporary files here")

    monkeypatch.setattr(tempfile, "TemporaryFile", noFiles)
    public.online("alice@example.test", status="Hello")
    connection = Connection(public.site)
    sendChunked(connection, b"jid=alice%40example.test&type=text")
    assert connection.response().body == b"Hello"


def test_oversizedChunkedBodyRefused(public):
    """
    A chunked POST body over the limit is answered with 413.
    """
    connection = Connection(public.site)
    sendChunked(connection, b"jid=alice@example.test&pad=" + b"x" * (70 * 1024))
    assert connection.response().code == 413


def test_bodyAnnouncedOverTheLimitRefusedAtOnce(public):
    """
    A POST whose Content-Length is over the limit is answered with 413 as
    soon as its headers are in, and the connection is closed: the body is
    not waited for, and what still comes is not read.
    """
    connection = Connection(public.site)
    with capturedLogs() as events:
        connection.channel.dataReceived(
            b"POST " + STATUS.encode() + b" HTTP/1.1\r\nHost: presence.example.test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
        response = connection.response()
        assert (response.code, response.body) == (413, b"request body too large\n")
        assert connection.transport.disconnecting
        connection.channel.dataReceived(b"jid=alice@example.test&" + b"x" * 100_000)
    assert (connection.transport.value(), events) == (b"", [])


def test_chunkedBodyRefusedOnceOverTheLimit(public):
    """
    A chunked POST body is answered with 413, and the connection closed,
    as soon as it passes the limit, before the rest is sent.
    """
    connection = Connection(public.site)
    connection.channel.dataReceived(
        b"POST " + STATUS.encode() + b" HTTP/1.1\r\nHost: presence.example.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 4096
    for _ in range(16):
        connection.channel.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert connection.transport.value() == b""
    connection.channel.dataReceived(b"1\r\nx\r\n")
    assert connection.response().code == 413
    assert connection.transport.disconnecting


def test_answersCarrySafetyHeaders(public):
    """
    Answers forbid content sniffing and run nothing when opened directly.
    """
    response = public.get("jid=alice@example.test&type=xml")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


@pytest.mark.parametrize("query,reason", [
    ("", "jid is required"),
    ("jid=", "jid is required"),
    ("jid=example.test", "jid must name a user (user@domain)"),
    ("jid=a@b@c", "jid is not a valid JID"),
    ("jid=%FF%FE@example.test", "jid is not valid UTF-8"),
    ("jid=" + "a" * 4000 + "@example.test", "jid is too long"),
    ("jid=" + "a" * 1024 + "@example.test", "jid is not a valid JID"),
    ("jid=a@example.test&req_jid=a@" + "d" * 1024, "req_jid is not a valid JID"),
    ("jid=a@example.test&jid=b@example.test", "jid is given more than once"),
    ("jid=a@example.test&req_jid=%40%40", "req_jid is not a valid JID"),
    ("jid=a@.", "jid is not a valid JID"),
    ("jid=a@example.test&req_jid=a..b", "req_jid is not a valid JID"),
    ("jid=a@example.test&req_jid=%E2%80%8B", "req_jid is not a valid JID"),
    ("jid=a@example.test&type=html", "type must be image, text, xml, json, svg, shields or avatar"),
    ("jid=a@example.test&images=http://x.example/a.png", "images must contain --IMAGE--"),
    ("jid=a@example.test&images=ftp://x.example/--IMAGE--", "images must be an absolute http or https URL"),
    ("jid=a@example.test&images=/--IMAGE--.png", "images must be an absolute http or https URL"),
    ("jid=a@example.test&images=javascript:alert(1)--IMAGE--", "images must be an absolute http or https URL"),
    ("jid=a@example.test&away=http://x.example/%0d%0aSet-Cookie:x", "away must not contain spaces or control characters"),
    ("jid=a@example.test&dnd=http://x.example/" + "a" * 3000, "dnd is too long"),
    ("jid=a@example.test&offline=http://[::1", "offline is not a valid URL"),
    ("jid=a@example.test&offline=" + quote("https://chat.example.com%5C@evil.example/", safe=""),
     "offline must not contain a user name or password"),
    ("jid=a@example.test&away=" + quote("https://user:pw@evil.example/", safe=""),
     "away must not contain a user name or password"),
    ("jid=a@example.test&offline=" + quote("https://chat.example.com\\@evil.example/", safe=""),
     "offline must not contain backslashes"),
    ("jid=a@example.test&images=" + quote("https:/\\evil.example/--IMAGE--", safe=""),
     "images must not contain backslashes"),
])
def test_badRequests(public, query, reason):
    """
    Bad parameters get 400 with a short plain-text reason.
    """
    response = public.get(query)
    assert response.code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == (reason + "\n").encode()


@pytest.mark.parametrize("query", ["jid=a@.", "jid=a@example.test&req_jid=a..b", "jid=%E2%80%8B@example..test"])
def test_unpreparableJIDIsABadRequestThatLogsNothing(public, query):
    """
    A JID that stringprep cannot prepare (an empty domain label) is a bad
    request like any other, and logs nothing.
    """
    with capturedLogs() as events:
        response = public.get(query)
    assert (response.code, events) == (400, [])


def test_badRequestReadsNoRoster(private):
    """
    A bad request is refused before anything else happens.
    """
    assert private.get("jid=alice@example.test&req_jid=bob@example.test&type=bogus").code == 400
    assert private.fetches == {}


def test_unknownParametersIgnored(public):
    """
    Parameters the API does not know (cache busters) are ignored.
    """
    assert public.get("jid=alice@example.test&t=12345").code == 200


def test_parseQuery():
    """
    parseQuery normalises JIDs and collects redirects per state.
    """
    query = parseQuery({b"jid": [b"Alice@Example.test/x"], b"req_jid": [b"Bob@example.test"],
                        b"type": [b"xml"], b"chat": [b"http://e.example/c.png"]})
    assert (query.user, query.requester, query.kind) == ("alice@example.test", "bob@example.test", "xml")
    assert query.redirects == {State.CHAT: "http://e.example/c.png"}
    with pytest.raises(BadRequest):
        parseQuery({})


@pytest.mark.parametrize("method, target, body", [
    ("GET", f"{STATUS}?jid=alice@example.test", b""),
    ("GET", "/plugins/presence/health", b""),
    ("GET", "/nowhere", b""),
    ("DELETE", STATUS, b""),
    ("POST", STATUS, b"x" * (70 * 1024)),
])
def test_serverIsNamedWithoutVersion(public, method, target, body):
    """
    Every answer names the server as presenced, without a version.
    """
    assert request(public.site, method, target, body).headers["server"] == "presenced"


def test_serverIsNamedWhenAnsweredLater(private):
    """
    An answer that waits for a roster names the server the same way.
    """
    connection = Connection(private.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test")
    private.fetches["alice@example.test"].callback(frozenset())
    assert connection.response().headers["server"] == "presenced"


def test_otherPathsAreNotFound(public):
    """
    Only the status resource exists.
    """
    assert request(public.site, "GET", "/plugins/presence/other").code == 404
    assert request(public.site, "GET", "/").code == 404


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW"])
@pytest.mark.parametrize("path", ["/", "/plugins", "/plugins/presence", "/plugins/presence/", "/nowhere",
                                  "/plugins/other/deeper"])
def test_directoriesAreNotFoundWhateverTheMethod(public, method, path):
    """
    The directories above the resources answer every method as an unknown
    path does, with a 404, and log nothing.
    """
    with capturedLogs() as events:
        response = request(public.site, method, path)
    assert (response.code, events) == (404, [])


def test_redirectAfterRosterRead(private):
    """
    A redirect decided after a roster read is a complete, empty answer.
    """
    url = quote("https://example.org/--IMAGE--.png", safe="")
    connection = Connection(private.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&images={url}")
    private.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    response = connection.response()
    assert (response.code, response.headers["location"]) == (302, "https://example.org/offline.png")
    assert (response.body, response.headers["content-length"]) == (b"", "0")
    assert "content-type" not in response.headers


def test_health(public):
    """
    Health answers 200 with JSON while healthy, 503 with the same shape
    otherwise.
    """
    response = request(public.site, "GET", "/plugins/presence/health")
    assert (response.code, response.headers["content-type"]) == (200, "application/json")
    assert json.loads(response.body) == {"xmpp": "connected"}
    public.health = (False, {"xmpp": "disconnected"})
    response = request(public.site, "GET", "/plugins/presence/health")
    assert (response.code, json.loads(response.body)) == (503, {"xmpp": "disconnected"})


def test_healthHeadAnswersTheLengthOfGetAndLogsNothing(public):
    """
    A HEAD of health answers as GET does, with the length of its body but
    without it, and logs nothing.
    """
    for health, code in [((True, {"xmpp": "connected"}), 200), ((False, {"xmpp": "disconnected"}), 503)]:
        public.health = health
        connection = Connection(public.site)
        with capturedLogs() as events:
            connection.send("HEAD", "/plugins/presence/health")
        response = connection.response(withBody=False)
        assert (response.code, response.headers["content-length"], events) == (
            code, str(len(json.dumps(health[1]))), [])
        assert connection.transport.value() == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_healthRefusesOtherMethodsWithAPlain405(public, method):
    """
    Health answers any method but GET and HEAD with a plain 405 naming
    them, never twisted.web's 501 page.
    """
    response = request(public.site, method, "/plugins/presence/health")
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD")
    assert (response.headers["content-type"], response.body) == (
        "text/plain; charset=utf-8", b"only GET and HEAD are allowed\n")


def healthFrom(fixture, peer, forwarded=None):
    """
    The JSON body of a health answer to a request from C{peer}.
    """
    connection = Connection(fixture.site, peer)
    connection.send("GET", "/plugins/presence/health", headers={"X-Forwarded-For": forwarded} if forwarded else None)
    return json.loads(connection.response().body)


DETAILED = {"xmpp": "connected", "since": "2026-12-03T05:00:00+00:00", "users_online": 3, "version": "1.0"}


def test_healthDetailsOnlyForTheConfiguredNetworks(public):
    """
    Clients on the networks health details are shown to get the whole
    report; any other gets the status alone, with the same HTTP status.
    """
    from ipaddress import ip_network

    public.health = (True, DETAILED)
    public.healthResource.detailsFrom = (ip_network("127.0.0.0/8"), ip_network("2001:db8::/32"))
    assert healthFrom(public, "127.0.0.1") == DETAILED
    assert healthFrom(public, "192.0.2.1") == {"xmpp": "connected"}
    public.health = (False, dict(DETAILED, xmpp="disconnected"))
    response = request(public.site, "GET", "/plugins/presence/health")
    assert (response.code, json.loads(response.body)["users_online"]) == (503, 3)
    public.healthResource.detailsFrom = ()
    assert healthFrom(public, "127.0.0.1") == {"xmpp": "disconnected"}


def test_healthDetailsBehindTrustedProxies(public):
    """
    Behind trusted proxies, the client they name decides; a forwarding
    header that cannot be read, or one from an untrusted peer, shows no
    details.
    """
    from ipaddress import ip_network

    public.health = (True, DETAILED)
    public.site.logFormatter.trusted = (ip_network("10.0.0.5"),)
    public.healthResource.detailsFrom = (ip_network("10.0.0.0/8"),)
    assert healthFrom(public, "10.0.0.5", "10.1.2.3") == DETAILED
    assert healthFrom(public, "10.0.0.5", "203.0.113.7, 10.1.2.3") == DETAILED
    assert healthFrom(public, "10.0.0.5", "10.1.2.3, 203.0.113.7") == {"xmpp": "connected"}
    assert healthFrom(public, "10.0.0.5", "10.1.2.3, <script>") == {"xmpp": "connected"}
    assert healthFrom(public, "10.0.0.5") == DETAILED
    public.healthResource.detailsFrom = (ip_network("192.0.2.0/24"),)
    assert healthFrom(public, "203.0.113.7", "192.0.2.1") == {"xmpp": "connected"}


@pytest.mark.parametrize("peer, headers", [
    ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}),
    ("127.0.0.1", {"Forwarded": "for=203.0.113.7"}),
    ("127.0.0.1", {"X-Real-IP": "203.0.113.7"}),
    ("10.0.0.5", {"X-Real-IP": "127.0.0.1"}),
])
def test_healthDetailsNotForRequestsForwardedOtherwise(public, peer, headers):
    """
    A request forwarded other than through trusted proxies naming the
    client in X-Forwarded-For gets no details, even from a peer that would
    get them: the client it was forwarded for cannot be told.
    """
    from ipaddress import ip_network

    public.health = (True, DETAILED)
    public.site.logFormatter.trusted = (ip_network("10.0.0.5"),)
    public.healthResource.detailsFrom = (ip_network("127.0.0.0/8"), ip_network("10.0.0.5"))
    connection = Connection(public.site, peer)
    connection.send("GET", "/plugins/presence/health", headers=headers)
    assert json.loads(connection.response().body) == {"xmpp": "connected"}


def test_healthDetailsForIPv4MappedClients(public):
    """
    An IPv4 client of a dual-stack listener counts as its IPv4 address.
    """
    from ipaddress import ip_network

    public.health = (True, DETAILED)
    public.healthResource.detailsFrom = (ip_network("127.0.0.0/8"),)
    connection = Connection(public.site)
    connection.transport.peerAddress = address.IPv6Address("TCP", "::ffff:127.0.0.1", 40000)
    connection.send("GET", "/plugins/presence/health")
    assert json.loads(connection.response().body) == DETAILED


def test_accessLogInCombinedFormat(public, tmp_path):
    """
    With an access log, each request is written in the combined log format,
    flushed within a second.
    """
    path = tmp_path / "access.log"
    public.site.setAccessLog(AccessLog(str(path), public.clock))
    public.site.startFactory()
    request(public.site, "GET", f"{STATUS}?jid=alice@example.test&type=text",
            headers={"User-Agent": "probe/1.0", "Referer": "https://blog.example/"})
    public.clock.advance(1)
    line = path.read_text()
    assert line.startswith('"127.0.0.1" - - [')
    assert f'"GET {STATUS}?jid=alice@example.test&type=text HTTP/1.1" 200 11 "https://blog.example/" "probe/1.0"' in line
    public.site.stopFactory()


def test_newAccessLogFileIsNotWorldReadable(tmp_path):
    """
    An access log file that does not exist yet is created readable by its
    owner and group only.
    """
    path = tmp_path / "access.log"
    previous = os.umask(0o022)
    try:
        AccessLog(str(path), task.Clock()).close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_accessLogOff(public, tmp_path):
    """
    Without an access log, nothing is written anywhere.
    """
    path = tmp_path / "access.log"
    public.site.setAccessLog(AccessLog(str(path), public.clock))
    public.site.startFactory()
    public.site.setAccessLog(None)
    request(public.site, "GET", f"{STATUS}?jid=alice@example.test")
    public.clock.advance(1)
    assert path.read_text() == ""
    public.site.stopFactory()


def test_replacedAccessLogFlushedAtOnce(public, tmp_path):
    """
    An access log that is replaced (or switched off) has its buffered
    lines written out at once.
    """
    path = tmp_path / "access.log"
    public.site.setAccessLog(AccessLog(str(path), public.clock))
    public.site.startFactory()
    request(public.site, "GET", f"{STATUS}?jid=alice@example.test")
    public.site.setAccessLog(None)
    assert f"GET {STATUS}?jid=alice@example.test" in path.read_text()
    public.site.stopFactory()


def logLine(public, peer, forwarded=None, trusted=()):
    """
    The access log line of one request from C{peer}.
    """
    from ipaddress import ip_network

    lines = []

    class Sink:
        write = lines.append

    public.site.logFormatter.trusted = tuple(ip_network(t) for t in trusted)
    public.site.setAccessLog(Sink())
    public.site.startFactory()
    connection = Connection(public.site, peer)
    connection.send("GET", f"{STATUS}?jid=alice@example.test",
                    headers={"X-Forwarded-For": forwarded} if forwarded else None)
    public.site.stopFactory()
    return lines[0]


def test_accessLogClientWithoutTrustedProxies(public):
    """
    Without trusted proxies, X-Forwarded-For is ignored.
    """
    assert logLine(public, "10.0.0.5", "203.0.113.7").startswith('"10.0.0.5" ')


def test_accessLogClientFromTrustedProxy(public):
    """
    From a trusted proxy, the client is the rightmost untrusted address of
    X-Forwarded-For.
    """
    line = logLine(public, "10.0.0.5", "198.51.100.1, 203.0.113.7, 10.0.0.9", trusted=["10.0.0.0/24"])
    assert line.startswith('"203.0.113.7" ')


def test_accessLogClientFromUntrustedPeer(public):
    """
    A client that is not a trusted proxy cannot choose the logged address.
    """
    line = logLine(public, "192.0.2.44", "203.0.113.7", trusted=["10.0.0.0/24"])
    assert line.startswith('"192.0.2.44" ')


def test_accessLogMalformedForwardedFor(public):
    """
    A malformed X-Forwarded-For from a trusted proxy logs the proxy.
    """
    assert logLine(public, "10.0.0.5", "<script>", trusted=["10.0.0.5"]).startswith('"10.0.0.5" ')


class LoggedRequest:
    """
    What an access log formatter reads of a request.
    """

    def __init__(self, method, uri, headers, code=200, sentLength=11, clientproto=b"HTTP/1.1"):
        self.method, self.uri, self.code, self.sentLength, self.clientproto = method, uri, code, sentLength, clientproto
        self._headers = headers

    def getHeader(self, name):
        return self._headers.get(name)

    def getClientAddress(self):
        return address.IPv6Address("TCP", "2001:db8::1", 4000)


@pytest.mark.parametrize("method, uri, headers, sentLength", [
    (b"GET", b"/plugins/presence/status?jid=a@example.test", {}, 0),
    (b"GET", b"/s?q=\"quoted\"&b='single'", {b"user-agent": b"agent \"x\" 'y' \\z"}, 11),
    (b"POST", b"/\xff\x00\t\r\n\x7f", {b"referer": b"https://r.example/'", b"user-agent": b"\xc3\xa9t\xc3\xa9"}, 99),
    (b"GET", b"/" + b"x\"" * 600, {b"user-agent": b"'" * 700}, 5),
])
def test_accessLogLineAsTwisted(method, uri, headers, sentLength):
    """
    presenced's access log lines are the same as twisted.web's combined log
    format lines, whatever bytes the request holds, and however often the
    same fields come again.
    """
    request = LoggedRequest(method, uri, headers, sentLength=sentLength)
    expected = http.combinedLogFormatter("[02/Dec/2026:15:00:00 +0000]", request)
    for _ in range(2):
        assert combinedLogLine("[02/Dec/2026:15:00:00 +0000]", request, request.getClientAddress()) == expected


@pytest.fixture
def signed():
    """
    Subscribers-only service whose requesters must be signed with L{KEY}.
    """
    fixture = Fixture(public=False, keys=(KEY,), required=True)
    fixture.clock.advance(1_000_000)
    fixture.online("alice@example.test", state=State.AWAY, status="Lunch")
    return fixture


def expiresIn(fixture, seconds=60):
    return int(fixture.clock.seconds()) + seconds


def test_unsignedSelfRequestIsNoProof(private):
    """
    Without signatures, naming the user as requester is taken at its word:
    anyone may claim to be Bob and see Bob's presence.  This is what
    signed requesters exist to stop.
    """
    private.online("alice@example.test", state=State.AWAY)
    assert private.get("jid=alice@example.test&req_jid=alice@example.test&type=text").body == b"Away"


def test_signedSelfRequestIsShown(signed):
    """
    A user whose request the web site signed sees their own presence.
    """
    query = signedQuery(KEY, "alice@example.test", "alice@example.test", expiresIn(signed))
    assert signed.get(f"{query}&type=text").body == b"Lunch"


def test_signedSubscriberIsShownAfterTheRoster(signed):
    """
    A signed requester is still only shown the user when subscribed.
    """
    query = signedQuery(KEY, "alice@example.test", "bob@example.test", expiresIn(signed))
    connection = Connection(signed.site)
    connection.send("GET", f"{STATUS}?{query}&type=text")
    signed.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    assert connection.response().body == b"Lunch"


def test_signatureCoversTheNormalisedJIDs(signed):
    """
    The signature is over the normalised bare JIDs, so a request that
    spells them differently (case, resource) carries the same signature.
    """
    expires = expiresIn(signed)
    sig = signature(KEY, "alice@example.test", "alice@example.test", expires)
    answer = signed.get(f"jid=Alice@Example.test&req_jid=alice@example.test/web&req_exp={expires}"
                        f"&req_sig={sig}&type=text")
    assert answer.body == b"Lunch"


def test_signedRequestAsPost(signed):
    """
    A signed requester may be sent in a form POST body too.
    """
    query = signedQuery(KEY, "alice@example.test", "alice@example.test", expiresIn(signed))
    assert signed.get(f"{query}&type=text", method="POST").body == b"Lunch"


def _refusals(fixture):
    expires = expiresIn(fixture)
    good = signature(KEY, "alice@example.test", "alice@example.test", expires)
    return {
        "unsigned": "jid=alice@example.test&req_jid=alice@example.test",
        "expired": "jid=alice@example.test&req_jid=alice@example.test&req_exp={}&req_sig={}".format(
            int(fixture.clock.seconds()),
            signature(KEY, "alice@example.test", "alice@example.test", int(fixture.clock.seconds()))),
        "wrong key": signedQuery(OLD_KEY, "alice@example.test", "alice@example.test", expires),
        "other user": "jid=alice@example.test&req_jid=alice@example.test&req_exp={}&req_sig={}".format(
            expires, signature(KEY, "bob@example.test", "alice@example.test", expires)),
        "other requester": "jid=alice@example.test&req_jid=alice@example.test&req_exp={}&req_sig={}".format(
            expires, signature(KEY, "alice@example.test", "bob@example.test", expires)),
        "later expiry": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={expires + 1}&req_sig={good}",
        "no signature": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={expires}",
        "no expiry": f"jid=alice@example.test&req_jid=alice@example.test&req_sig={good}",
        "truncated": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={expires}&req_sig={good[:-1]}",
        "padded": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={expires}&req_sig={good}%3D",
        "non-ascii": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={expires}&req_sig=%C3%A9",
        "signed expiry": f"jid=alice@example.test&req_jid=alice@example.test&req_exp=%2B{expires}&req_sig={good}",
        "huge expiry": f"jid=alice@example.test&req_jid=alice@example.test&req_exp={'9' * 40}&req_sig={good}",
        "unicode digits": f"jid=alice@example.test&req_jid=alice@example.test&req_exp=%D9%A1&req_sig={good}",
    }


@pytest.mark.parametrize("kind", ["text", "image", "xml"])
def test_unprovenRequestersGetTheForbiddenAnswer(signed, kind):
    """
    An unsigned, expired, forged or garbled requester gets the forbidden
    answer, byte for byte the one a request naming nobody gets, and no
    roster is read.
    """
    nobody = signed.get(f"jid=alice@example.test&type={kind}")
    for reason, query in _refusals(signed).items():
        answer = signed.get(f"{query}&type={kind}")
        assert (answer.code, answer.body) == (nobody.code, nobody.body.replace(
            b"<presence type='error' from='alice@example.test'>",
            b"<presence type='error' from='alice@example.test' to='alice@example.test'>")), reason
    assert signed.fetches == {}


def test_unprovenRequesterIsRefusedEvenWherePublic():
    """
    Where anyone may see presence, a request whose requester cannot be
    proven is still refused, so a broken signer shows up at once.
    """
    fixture = Fixture(public=True, keys=(KEY,), required=True)
    fixture.online("alice@example.test", state=State.AWAY)
    assert fixture.get("jid=alice@example.test&type=text").body == b"Away"
    assert fixture.get("jid=alice@example.test&req_jid=bob@example.test&type=text").body == b"Forbidden"


def test_signatureExpiresWithTheClock(signed):
    """
    A signature is good until its expiry, not at it.
    """
    query = signedQuery(KEY, "alice@example.test", "alice@example.test", expiresIn(signed, 10))
    assert signed.get(f"{query}&type=text").body == b"Lunch"
    signed.clock.advance(10)
    assert signed.get(f"{query}&type=text").body == b"Forbidden"


def test_eitherOfTwoKeysIsAccepted():
    """
    While keys are rotated, a signature by either key is accepted.
    """
    fixture = Fixture(public=False, keys=(KEY, OLD_KEY), required=True)
    fixture.online("alice@example.test", state=State.DND)
    for key in (KEY, OLD_KEY):
        query = signedQuery(key, "alice@example.test", "alice@example.test", 60)
        assert fixture.get(f"{query}&type=text").body == b"Do not disturb"


def test_unsignedRequestersBelievedWhenSignaturesAreOptional():
    """
    With a key but signatures not required, an unsigned requester is
    believed as before, while a signed one must still be right.
    """
    fixture = Fixture(public=False, keys=(KEY,), required=False)
    fixture.online("alice@example.test", state=State.DND)
    assert fixture.get("jid=alice@example.test&req_jid=alice@example.test&type=text").body == b"Do not disturb"
    forged = signedQuery(OLD_KEY, "alice@example.test", "alice@example.test", 60)
    assert fixture.get(f"{forged}&type=text").body == b"Forbidden"


def test_signatureWithoutKeysProvesNothing(private):
    """
    A signed requester where no key is configured cannot be checked, so it
    is refused.
    """
    private.online("alice@example.test")
    query = signedQuery(KEY, "alice@example.test", "alice@example.test", 60)
    assert private.get(f"{query}&type=text").body == b"Forbidden"


@pytest.mark.parametrize("name", ["req_exp", "req_sig"])
def test_proofParametersAreSingleAndShort(signed, name):
    """
    req_exp and req_sig given twice, or absurdly long, are bad requests.
    """
    assert signed.get(f"jid=alice@example.test&{name}=1&{name}=2").code == 400
    assert signed.get(f"jid=alice@example.test&{name}={'1' * 300}").code == 400


def test_requesterNotReadWhenItCannotMatter(signed):
    """
    req_jid is not even parsed when the answer is refused whoever it
    names: the request proves no requester (unsigned where signatures are
    required, expired), or the user is on a domain that is not served.  So
    a malformed one gets the forbidden answer there, and a 400 where it
    would be used.
    """
    expired = int(signed.clock.seconds()) - 1
    for query in ["jid=alice@example.test&req_jid=a@@b",
                  f"jid=alice@example.test&req_jid=a@@b&req_exp={expired}&req_sig=x",
                  f"jid=alice@other.test&req_jid=a@@b&req_exp={expiresIn(signed)}&req_sig=x"]:
        assert signed.get(f"{query}&type=text").body == b"Forbidden", query
    answer = signed.get(f"jid=alice@example.test&req_jid=a@@b&req_exp={expiresIn(signed)}&req_sig=x")
    assert (answer.code, answer.body) == (400, b"req_jid is not a valid JID\n")
    assert signed.get("jid=alice@example.test&req_jid=a@@b&type=xml").code == 400
