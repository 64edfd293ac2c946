"""
Tests for L{presenced.delivery}: CORS, validators, conditional requests
and caching of the status answers, driven through the real site.
"""

from __future__ import annotations

import re

import pytest

from presenced.answers import PNG, Body
from presenced.config import fromString
from presenced.delivery import Delivery
from presenced.presence import ResourcePresence, Shown, State

from test_web import IMAGES, STATUS, Fixture
from webhelpers import Connection, request

#: 2025-12-02 18:26:40 UTC
WHEN = 1764700000.0
WHEN_DATE = "Tue, 02 Dec 2025 18:26:40 GMT"
ALICE = "jid=alice@example.test"


def settings(http: str = "", presence: str = "public = true\n"):
    return fromString(f"""
[xmpp]
jid = presence.example.test
secret = s
domain = example.test

[http]
listen = tcp:0:interface=127.0.0.1
{http}

[presence]
{presence}
""")


def configured(http: str = "", presence: str = "public = true\n", public: bool = True) -> Fixture:
    """
    A site with the given settings, and alice online as away since
    L{WHEN}.
    """
    fixture = Fixture(public=public)
    fixture.status.reconfig(settings(http, presence), IMAGES)
    fixture.tracker.available("alice@example.test", ResourcePresence(
        resource="home", state=State.AWAY, status="Lunch", stanza=b"<presence/>", received=WHEN))
    return fixture


def ask(fixture: Fixture, query: str = ALICE, method: str = "GET", **headers: str):
    names = {name.replace("_", "-"): value for name, value in headers.items()}
    if method == "POST":
        names["Content-Type"] = "application/x-www-form-urlencoded"
        return request(fixture.site, "POST", STATUS, query.encode(), names)
    return request(fixture.site, method, f"{STATUS}?{query}", headers=names)


@pytest.fixture
def site():
    return configured()


def test_answerCarriesAStrongTag(site):
    """
    A 200 answer carries a strong, quoted entity tag.
    """
    assert re.fullmatch(r'"[A-Za-z0-9_-]{16}"', ask(site).headers["etag"])


def test_sameAnswerSameTag(site):
    """
    Asking again for an answer that did not change gives the same tag,
    whoever asks and however.
    """
    tags = {ask(site).headers["etag"], ask(site, method="POST").headers["etag"],
            ask(site, ALICE + "&type=image").headers["etag"], ask(site, method="HEAD").headers["etag"]}
    assert len(tags) == 1


def test_anyChangeOfTheAnswerChangesTheTag(site):
    """
    Another state, status text, stanza or kind of answer: another tag.
    """
    tags = [ask(site, ALICE + kind).headers["etag"] for kind in ("", "&type=text", "&type=xml")]
    site.tracker.available("alice@example.test", ResourcePresence(
        resource="home", state=State.AWAY, status="Back soon", stanza=b"<presence><show/></presence>",
        received=WHEN + 1))
    tags += [ask(site, ALICE + kind).headers["etag"] for kind in ("&type=text", "&type=xml")]
    site.tracker.available("alice@example.test", ResourcePresence(resource="home", state=State.DND, received=WHEN + 2))
    tags.append(ask(site).headers["etag"])
    assert len(set(tags)) == len(tags)


def test_sameBytesOfAnotherTypeGetAnotherTag():
    """
    The tag covers the headers of the body: the same bytes as another
    type are another answer.
    """
    delivery = Delivery()
    assert delivery.tag(Body(PNG, b"<presence/>")) != delivery.tag(Body(((b"Content-Type", b"text/xml"),), b"<presence/>"))


def test_tagsOfLargeBodiesAndManyBodiesStayRight():
    """
    Bodies too large to have their tags remembered, and more bodies than
    are remembered, get the same tags each time.
    """
    delivery = Delivery()
    delivery.rememberedBytes = 1000
    bodies = [Body(PNG, bytes([n]) * 300) for n in range(10)] + [Body(PNG, b"x" * (delivery.rememberedBody + 1))]
    first = [delivery.tag(body) for body in bodies]
    assert [delivery.tag(Body(PNG, bytes(body.data))) for body in bodies] == first
    assert len(set(first)) == len(first)


def test_lastModifiedIsWhenTheShownPresenceChanged(site):
    """
    An answer about a user whose presence is known to have changed at
    some time says so in Last-Modified.
    """
    assert ask(site).headers["last-modified"] == WHEN_DATE


def test_lastModifiedIsTheLaterOfSinceAndLastSeen():
    """
    Last-Modified is the later of since and lastSeen, when either is known.
    """
    delivery = Delivery()
    assert delivery.lastModified(Shown(State.OFFLINE, since=10.0, lastSeen=20.0)) == 20.0
    assert delivery.lastModified(Shown(State.OFFLINE, since=30.0, lastSeen=20.0)) == 30.0
    assert delivery.lastModified(Shown(State.OFFLINE, lastSeen=20.0)) == 20.0
    assert delivery.lastModified(Shown(State.AWAY, since=10.0)) == 10.0
    assert delivery.lastModified(Shown(State.OFFLINE)) is None


def test_unknownTimeGivesNoLastModified(site):
    """
    A user never seen has no Last-Modified, and still a tag.
    """
    response = ask(site, "jid=nobody@example.test")
    assert "last-modified" not in response.headers and "etag" in response.headers


def test_withoutLastSeenOfflineAnswersHaveNoLastModified():
    """
    With last_seen = false an offline user's answer does not tell when
    they went offline, not even in Last-Modified; an online one still has it.
    """
    fixture = configured(presence="public = true\nlast_seen = false\n")
    fixture.tracker.unavailable("bob@example.test", None, "Gone", WHEN)
    assert "last-modified" not in ask(fixture, "jid=bob@example.test").headers
    assert ask(fixture).headers["last-modified"] == WHEN_DATE


def test_forbiddenHasATagAndNoLastModified():
    """
    A refusal carries a tag, the same whatever the reason, and never a
    Last-Modified, even for a user whose presence changed at a known time.
    """
    fixture = configured(public=False)
    answers = []
    for user, roster in [("alice", frozenset({"carol@example.test"})), ("ghost", frozenset())]:
        connection = Connection(fixture.site)
        connection.send("GET", f"{STATUS}?jid={user}@example.test&req_jid=eve@example.test")
        fixture.fetches[f"{user}@example.test"].callback(roster)
        answers.append(connection.response())
    answers.append(ask(fixture, "jid=alice@other.test&req_jid=eve@example.test"))
    assert {r.body for r in answers} == {IMAGES[State.FORBIDDEN].data}
    assert len({r.headers["etag"] for r in answers}) == 1
    assert not any("last-modified" in r.headers for r in answers)


def test_ifNoneMatchWithTheTagIsNotModified(site):
    """
    If-None-Match naming the current tag gets a 304 with no body and no
    length, and the same tag, Last-Modified, cache and CORS headers.
    """
    first = ask(site)
    connection = Connection(site.site)
    connection.send("GET", f"{STATUS}?{ALICE}", headers={"If-None-Match": first.headers["etag"]})
    head, _, rest = connection.transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304 ") and rest == b""
    response = connection.response()
    for name in ("etag", "last-modified", "cache-control", "access-control-allow-origin",
                 "access-control-expose-headers"):
        assert response.headers[name] == first.headers[name]
    assert "content-length" not in response.headers and "content-type" not in response.headers


@pytest.mark.parametrize("field", ["{tag}", '"other", {tag}', '"a",{tag} , "b"', "W/{tag}", '"other", W/{tag}',
                                   "*", '"other", *'])
def test_ifNoneMatchForms(site, field):
    """
    The tag in a list, weak, or * matches.
    """
    tag = ask(site).headers["etag"]
    assert ask(site, If_None_Match=field.format(tag=tag)).code == 304


@pytest.mark.parametrize("field", ['"other"', "W/\"other\"", "", "{bare}", '"{bare}', "w/{tag}", "**"])
def test_ifNoneMatchOtherwiseIsAnswered(site, field):
    """
    Another tag, an unquoted or malformed one, or nothing: the answer.
    """
    tag = ask(site).headers["etag"]
    response = ask(site, If_None_Match=field.format(tag=tag, bare=tag.strip('"')))
    assert (response.code, response.body) == (200, IMAGES[State.AWAY].data)


def test_tagOfAnEarlierAnswerIsAnswered(site):
    """
    Once the presence changed, the tag of before gets the new answer and
    its new tag.
    """
    before = ask(site).headers["etag"]
    site.tracker.available("alice@example.test", ResourcePresence(resource="home", state=State.DND, received=WHEN + 5))
    response = ask(site, If_None_Match=before)
    assert (response.code, response.body) == (200, IMAGES[State.DND].data)
    assert response.headers["etag"] != before


@pytest.mark.parametrize("field,code", [
    ("Tue, 02 Dec 2025 18:26:39 GMT", 200),
    (WHEN_DATE, 304),
    ("Tue, 02 Dec 2025 18:26:41 GMT", 304),
    ("Wed, 01 Jan 2031 00:00:00 GMT", 304),
    ("Tuesday, 02-Dec-25 18:26:40 GMT", 304),
    ("Tuesday, 02-Dec-25 18:26:39 GMT", 200),
    ("Tue Dec  2 18:26:40 2025", 304),
    ("Tue Dec  2 18:26:39 2025", 200),
])
def test_ifModifiedSince(site, field, code):
    """
    If-Modified-Since at or after Last-Modified, in any of the three HTTP
    date forms, is a 304; before it, the answer.
    """
    assert ask(site, If_Modified_Since=field).code == code


@pytest.mark.parametrize("field", [
    "yesterday", "", "Tue, 02 Dec 2025 18:26:40", "Tue, 02 Dec 2025 18:26:40 CET", "Tue, 31 Feb 2025 18:26:40 GMT",
    "Tue, 02 Dec 2025 25:26:40 GMT", "tue, 02 dec 2025 18:26:40 gmt", "Tue, 2 Dec 2025 18:26:40 GMT",
    "Tue, 02 Dec 2025 18:26:40 GMT, Tue, 02 Dec 2025 18:26:40 GMT", "\u00e9",
])
def test_malformedIfModifiedSinceIsIgnored(site, field):
    """
    An If-Modified-Since that is not an HTTP date is ignored: the answer.
    """
    assert ask(site, If_Modified_Since=field).code == 200


def test_twoIfModifiedSinceAreIgnored(site):
    """
    Two If-Modified-Since fields are no date: the answer.
    """
    connection = Connection(site.site)
    connection.channel.dataReceived(f"GET {STATUS}?{ALICE} HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {WHEN_DATE}\r\n"
                                    f"If-Modified-Since: {WHEN_DATE}\r\n\r\n".encode())
    assert connection.response().code == 200


def test_ifNoneMatchComesBeforeIfModifiedSince(site):
    """
    With If-None-Match, If-Modified-Since is not looked at: another tag
    gets the answer however recent the date.
    """
    assert ask(site, If_None_Match='"other"', If_Modified_Since="Wed, 01 Jan 2031 00:00:00 GMT").code == 200


def test_ifModifiedSinceWithoutLastModifiedIsAnswered():
    """
    An answer without Last-Modified (a refusal) is never not modified
    by date.
    """
    fixture = configured(public=False)
    response = ask(fixture, "jid=alice@other.test", If_Modified_Since="Wed, 01 Jan 2031 00:00:00 GMT")
    assert (response.code, response.body) == (200, IMAGES[State.FORBIDDEN].data)


def test_headAndPostAnswerConditionallyToo(site):
    """
    HEAD and POST are revalidated as GET is.
    """
    tag = ask(site).headers["etag"]
    connection = Connection(site.site)
    connection.send("HEAD", f"{STATUS}?{ALICE}", headers={"If-None-Match": tag})
    head = connection.transport.value()
    assert head.startswith(b"HTTP/1.1 304 ") and head.endswith(b"\r\n\r\n") and b"Content-Length" not in head
    assert ask(site, method="POST", If_None_Match=tag).code == 304
    assert ask(site, method="POST", If_Modified_Since=WHEN_DATE).code == 304


def test_notModifiedAfterTheRoster():
    """
    A revalidation that waits for a roster is answered 304 once it arrives.
    """
    fixture = configured(public=False)
    query = f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test"
    connection = Connection(fixture.site)
    connection.send("GET", query)
    fixture.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    tag = connection.response().headers["etag"]
    connection.send("GET", query, headers={"If-None-Match": tag})
    response = connection.response()
    assert (response.code, response.body, response.headers["etag"]) == (304, b"", tag)


def test_redirectsStayAsTheyWere(site):
    """
    A redirect has no validators, is never kept, and is not revalidated.
    """
    response = ask(site, ALICE + "&away=https://img.example/away.png", If_None_Match="*")
    assert (response.code, response.headers["location"]) == (302, "https://img.example/away.png")
    assert response.headers["cache-control"] == "no-cache, no-store, max-age=0"
    assert "etag" not in response.headers and "last-modified" not in response.headers


def test_answersMustBeRevalidated(site):
    """
    By default a cache may keep answers but must revalidate them each time.
    """
    assert ask(site).headers["cache-control"] == "no-cache"
    assert ask(site, If_None_Match="*").headers["cache-control"] == "no-cache"


def test_maxAgeLetsCachesKeepAnswers():
    """
    With max_age, caches may use answers (200 and 304) that long unrevalidated.
    """
    fixture = configured(http="max_age = 30")
    assert ask(fixture).headers["cache-control"] == "max-age=30"
    assert ask(fixture, If_None_Match="*").headers["cache-control"] == "max-age=30"


@pytest.mark.parametrize("method,query", [("GET", "jid=nobody"), ("DELETE", ALICE)])
def test_errorsAreNeverKeptAndAreReadableCrossOrigin(site, method, query):
    """
    Errors are never kept and have no validators, and pages on other
    origins may read them, to see why.
    """
    response = ask(site, query, method=method, Origin="https://blog.example")
    assert response.code in (400, 405)
    assert response.headers["cache-control"] == "no-cache, no-store, max-age=0"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "etag" not in response.headers


def test_anyOriginByDefault(site):
    """
    By default any page may read the answers and their validators, without
    credentials, and the answer does not vary with the origin.
    """
    for headers in ({}, {"Origin": "https://blog.example"}):
        response = ask(site, **headers)
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-expose-headers"] == "ETag, Last-Modified"
        assert "vary" not in response.headers and "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origin,allowed", [
    ("https://blog.example", "https://blog.example"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("HTTPS://Blog.Example:443", "https://blog.example"),
    ("https://blog.example:8443", None),
    ("http://blog.example", None),
    ("https://evil.example", None),
    ("null", None),
    ("https://blog.example/", None),
    ("https://blog.example https://evil.example", None),
    ("https://u@blog.example", None),
    ("\u00e9", None),
])
def test_listedOrigins(origin, allowed):
    """
    With a list of origins, a listed one (after normalisation) is named;
    others get nothing; either way the answer varies with Origin.
    """
    fixture = configured(http="cors_origins = https://blog.example http://localhost:8000")
    response = ask(fixture, Origin=origin)
    assert response.headers["vary"] == "Origin"
    assert response.headers.get("access-control-allow-origin") == allowed
    assert ("access-control-expose-headers" in response.headers) == (allowed is not None)
    assert "access-control-allow-credentials" not in response.headers


def test_listedOriginsWithoutOrigin():
    """
    A request without Origin (or with two) gets no CORS headers, and the
    answer still varies with Origin, 304 and errors too.
    """
    fixture = configured(http="cors_origins = https://blog.example")
    connection = Connection(fixture.site)
    connection.channel.dataReceived(f"GET {STATUS}?{ALICE} HTTP/1.1\r\nHost: x\r\nOrigin: https://blog.example\r\n"
                                    "Origin: https://blog.example\r\n\r\n".encode())
    answers = [ask(fixture), ask(fixture, If_None_Match="*"), ask(fixture, "jid=x"), connection.response()]
    assert [r.headers["vary"] for r in answers] == ["Origin"] * 4
    assert not any("access-control-allow-origin" in r.headers for r in answers)


def test_corsOff():
    """
    With cors_origins = off, no CORS headers at all.
    """
    fixture = configured(http="cors_origins = off")
    headers = ask(fixture, Origin="https://blog.example").headers
    assert not any(name.startswith("access-control-") or name == "vary" for name in headers)


def test_preflight(site):
    """
    A preflight gets 204, no body, the methods and headers a page may use,
    and how long it may remember that.
    """
    connection = Connection(site.site)
    connection.send("OPTIONS", f"{STATUS}?{ALICE}", headers={
        "Origin": "https://blog.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match"})
    head, _, rest = connection.transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 ") and rest == b"" and b"Content-Length" not in head
    headers = connection.response().headers
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")} >= {
        "if-none-match", "if-modified-since", "content-type"}
    assert int(headers["access-control-max-age"]) >= 600
    assert "access-control-allow-credentials" not in headers


def test_anyOptionsRequestIsAnsweredSo(site):
    """
    OPTIONS without parameters or preflight headers is answered the same way.
    """
    response = request(site.site, "OPTIONS", STATUS)
    assert (response.code, response.body, response.headers["allow"]) == (204, b"", "GET, HEAD, POST, OPTIONS")


@pytest.mark.parametrize("cors,origin", [("cors_origins = https://blog.example", "https://evil.example"),
                                         ("cors_origins = off", "https://blog.example")])
def test_preflightOfAnOriginThatMayNot(cors, origin):
    """
    A preflight from an origin that may not read the answers is told the
    methods, and nothing a browser would let the page go on with.
    """
    fixture = configured(http=cors)
    response = ask(fixture, method="OPTIONS", Origin=origin, Access_Control_Request_Method="GET")
    assert (response.code, response.headers["allow"]) == (204, "GET, HEAD, POST, OPTIONS")
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_preflightOfAListedOrigin():
    """
    A preflight from a listed origin names it.
    """
    fixture = configured(http="cors_origins = https://blog.example")
    response = ask(fixture, method="OPTIONS", Origin="https://blog.example", Access_Control_Request_Method="GET")
    assert response.headers["access-control-allow-origin"] == "https://blog.example"
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-methods" in response.headers
