"""
Tests for the JSON, batch and badge answers of L{presenced.web}, driven
through a real twisted.web site over an in-memory transport.
"""

import gc
import json
from urllib.parse import quote
from xml.dom import minidom

import pytest
from twisted.logger import capturedLogs

from presenced.config import fromString
from presenced.presence import State
from presenced.sign import signedQuery

from test_web import IMAGES, KEY, STATUS, Fixture, _refusals, private, public  # noqa: F401 (fixtures)
from webhelpers import Connection, request

STATUSES = "/plugins/presence/statuses"
ALICE = "alice@example.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def batch(fixture, query, method="GET"):
    if method == "POST":
        return request(fixture.site, "POST", STATUSES, query.encode(), FORM)
    return request(fixture.site, method, f"{STATUSES}?{query}")


def withoutDate(response):
    return tuple(sorted((name, value) for name, value in response.headers.items() if name != "date"))


@pytest.mark.parametrize("kind, contentType", [
    ("json", "application/json; charset=utf-8"),
    ("shields", "application/json; charset=utf-8"),
    ("svg", "image/svg+xml; charset=utf-8"),
])
def test_newAnswersWithTheirTypeAndSafetyHeaders(public, kind, contentType):
    """
    type=json, svg and shields are answered with their content type, not
    sniffed, running nothing, never cached.
    """
    public.online(ALICE, state=State.AWAY, status="Lunch")
    response = public.get(f"jid={ALICE}&type={kind}")
    assert (response.code, response.headers["content-type"]) == (200, contentType)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert "no-cache" in response.headers["cache-control"]


@pytest.mark.parametrize("kind", ["json", "svg", "shields"])
def test_newAnswersByHeadAndPost(public, kind):
    """
    HEAD gives the GET answer's headers and length without a body; a form
    POST the GET answer.
    """
    public.online(ALICE, state=State.XA)
    got = public.get(f"jid={ALICE}&type={kind}")
    head = public.get(f"jid={ALICE}&type={kind}", method="HEAD")
    assert (head.headers["content-length"], head.body) == (str(len(got.body)), b"")
    assert public.get(f"jid={ALICE}&type={kind}", method="POST").body == got.body


def test_jsonOfAUserAsTheRendererHasIt(public):
    """
    type=json answers the user's object, jid normalised.
    """
    public.online(ALICE, state=State.AWAY, status="Lunch")
    body = json.loads(public.get("jid=Alice@Example.test/x&type=json").body)
    assert (body["jid"], body["state"], body["label"], body["status"]) == (ALICE, "away", "Away", "Lunch")


def test_jsonOfAnotherDomainNamesTheNormalisedJID(public):
    """
    A user on a domain that is not served is forbidden, named as asked
    but normalised: the answer shows it.
    """
    body = json.loads(public.get("jid=Bob@Other.test&type=json").body)
    assert body == {"jid": "bob@other.test", "state": "forbidden", "label": "Forbidden", "status": None,
                    "since": None, "idle_since": None, "last_seen": None}


@pytest.mark.parametrize("kind", ["json", "svg", "shields", "svg&message=status&label=me"])
def test_forbiddenIsTheSameWhateverTheReason(private, kind):
    """
    Not subscribed, no such user, a roster that cannot be read, no
    requester, another domain: the same forbidden answer, byte for byte
    and header for header, but for the JID asked (and so the tag); for
    the same JID, the same tag too.
    """
    private.online("alice@example.test", state=State.AWAY, status="Lunch")
    private.online("laice@example.test", state=State.AWAY, status="Lunch")
    answers = []
    for user, outcome in [("alice", frozenset({"carol@example.test"})), ("ecila", frozenset()),
                          ("laice", Exception("boom"))]:
        connection = Connection(private.site)
        connection.send("GET", f"{STATUS}?jid={user}@example.test&req_jid=eve@example.test&type={kind}")
        fetch = private.fetches.pop(f"{user}@example.test")
        fetch.errback(outcome) if isinstance(outcome, Exception) else fetch.callback(outcome)
        answers.append(connection.response())
    answers.append(private.get(f"jid=alice@example.test&type={kind}"))
    answers.append(private.get(f"jid=alice@another.test&req_jid=eve@example.test&type={kind}"))
    bodies = {response.body.replace(b"laice", b"alice").replace(b"ecila", b"alice").replace(b"another", b"example")
              for response in answers}
    assert len(bodies) == 1
    untagged = {tuple((name, value) for name, value in withoutDate(response) if name != "etag")
                for response in answers}
    assert len(untagged) == 1
    assert answers[0].headers["etag"] == answers[3].headers["etag"]
    assert b"Lunch" not in bodies.pop()


@pytest.mark.parametrize("kind", ["json", "svg", "shields"])
def test_unprovenRequestersGetTheForbiddenAnswer(kind):
    """
    Where signatures are required, every refused proof gets the answer of
    a request naming nobody.
    """
    fixture = Fixture(public=False, keys=(KEY,), required=True)
    fixture.online(ALICE, state=State.AWAY, status="Lunch")
    nobody = fixture.get(f"jid={ALICE}&type={kind}")
    for reason, query in _refusals(fixture).items():
        answer = fixture.get(f"{query}&type={kind}")
        assert (answer.body, withoutDate(answer)) == (nobody.body, withoutDate(nobody)), reason


def test_forbiddenBadgeSaysTheLocalPartAsked(private):
    """
    A refused badge says the local part asked for, normalised, and the
    forbidden label, whatever is asked to be shown.
    """
    for query in ["jid=Alice@example.test&type=shields", "jid=alice@other.test&type=shields&message=status"]:
        assert json.loads(private.get(query).body) == {
            "schemaVersion": 1, "label": "alice", "message": "Forbidden", "color": "#9f9f9f"}


def test_badgeOfAStatusOverHTTP(public):
    """
    message=status shows the status; label= the caller's label.
    """
    public.online(ALICE, state=State.DND, status="In a meeting")
    answer = json.loads(public.get(f"jid={ALICE}&type=shields&message=status&label=Alice%20B.").body)
    assert (answer["label"], answer["message"], answer["color"]) == ("Alice B.", "In a meeting", "#e05d44")
    svg = public.get(f"jid={ALICE}&type=svg&message=state").body
    assert minidom.parseString(svg).getElementsByTagName("title")[0].firstChild.data == "alice: Do not disturb"


@pytest.mark.parametrize("query, reason", [
    ("type=svg&label=" + "x" * 65, "label is too long"),
    ("type=svg&label=" + quote("\u00e9" * 65), "label is too long"),
    ("type=shields&label=" + "x" * 300, "label is too long"),
    ("type=svg&label=a%01b", "label must not contain control characters"),
    ("type=svg&label=a%EF%BF%BEb", "label must not contain control characters"),
    ("type=svg&label=%FF", "label is not valid UTF-8"),
    ("type=svg&label=a&label=b", "label is given more than once"),
    ("type=shields&message=bogus", "message must be state or status"),
])
def test_badBadgeParameters(public, query, reason):
    """
    A badge's label and message are checked: bad ones get 400.
    """
    response = public.get(f"jid={ALICE}&{query}")
    assert (response.code, response.body) == (400, (reason + "\n").encode())


def test_badgeParametersOfOtherAnswersIgnored(public):
    """
    label and message mean nothing to the other answers, which ignore them.
    """
    assert public.get(f"jid={ALICE}&type=text&label=%01&message=bogus").body == b"Unavailable"


def test_labelOf64CharactersIsShown(public):
    """
    A label of 64 characters, however many bytes, is shown whole.
    """
    label = "\u65e5" * 64
    assert json.loads(public.get(f"jid={ALICE}&type=shields&label={quote(label)}").body)["label"] == label


def test_statusesMapEachUserOnce(public):
    """
    statuses maps each normalised bare JID, once, in the order first
    asked, to its type=json object.
    """
    public.online(ALICE, state=State.AWAY, status="Lunch")
    response = batch(public, "jid=bob@example.test&jid=Alice@Example.test/phone&jid=alice@example.test")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = json.loads(response.body)
    assert list(body) == ["bob@example.test", ALICE]
    assert response.body == (b'{"bob@example.test":' + public.get("jid=bob@example.test&type=json").body
                             + b',"alice@example.test":' + public.get(f"jid={ALICE}&type=json").body + b"}")


def test_statusesByHeadAndPost(public):
    """
    statuses answers HEAD and form POST as status does.
    """
    got = batch(public, f"jid={ALICE}&jid=bob@example.test")
    head = batch(public, f"jid={ALICE}&jid=bob@example.test", method="HEAD")
    assert (head.headers["content-length"], head.body) == (str(len(got.body)), b"")
    assert batch(public, f"jid={ALICE}&jid=bob@example.test", method="POST").body == got.body


def test_statusesOfAHundredUsers(public):
    """
    A hundred different users, with a requester and its proof, is not
    too many; duplicates do not count.
    """
    users = [f"user{number}@example.test" for number in range(100)]
    query = "&".join(f"jid={user}" for user in users + ["USER0@example.test"] * 20)
    body = json.loads(batch(public, f"{query}&req_jid=a@example.test&req_exp=1&req_sig=x").body)
    assert list(body) == users


@pytest.mark.parametrize("query, reason", [
    ("", "jid is required"),
    ("jid=", "jid is not a valid JID"),
    ("jid=example.test", "jid must name a user (user@domain)"),
    ("jid=a@example.test&jid=b@example.test&jid=a@@b", "jid #3 is not a valid JID"),
    ("jid=a@example.test&jid=%FF@example.test", "jid #2 is not valid UTF-8"),
    ("jid=a@example.test&jid=" + "a" * 4000 + "@example.test", "jid #2 is too long"),
    ("jid=a@example.test&jid=other.test", "jid #2 must name a user (user@domain)"),
    ("&".join(f"jid=user{number}@example.test" for number in range(101)), "more than 100 different users"),
    ("jid=a@example.test&req_jid=a@@b", "req_jid is not a valid JID"),
    ("jid=a@example.test&req_jid=a@example.test&req_jid=b@example.test", "req_jid is given more than once"),
])
def test_badStatusesRequests(public, query, reason):
    """
    None, more than 100 different users, or a malformed one, get 400
    naming the problem.
    """
    response = batch(public, query)
    assert (response.code, response.body) == (400, (reason + "\n").encode())


def test_statusesDecidedEntryByEntry(private):
    """
    In subscribers-only mode, each entry is decided on its own: the
    requester themself, a user whose roster has them, one whose roster
    has not, one on another domain.
    """
    for user in ("alice", "bob", "carol"):
        private.online(f"{user}@example.test", state=State.AWAY, status=user)
    connection = Connection(private.site)
    connection.send("GET", f"{STATUSES}?jid=alice@example.test&jid=bob@example.test&jid=carol@example.test"
                           "&jid=dave@other.test&req_jid=alice@example.test")
    private.fetches.pop("bob@example.test").callback(frozenset({"alice@example.test"}))
    private.fetches.pop("carol@example.test").callback(frozenset())
    body = json.loads(connection.response().body)
    assert [(entry["state"], entry["status"]) for entry in body.values()] == [
        ("away", "alice"), ("away", "bob"), ("forbidden", None), ("forbidden", None)]


def test_statusesReadRostersConcurrentlyOncePerUser(private):
    """
    The rosters a batch needs are all asked for at once, each once, and
    it is answered when the last one arrives; a cached roster is not read
    again.
    """
    private.online("carol@example.test")
    Connection(private.site).send("GET", f"{STATUS}?jid=carol@example.test&req_jid=eve@example.test")
    private.fetches.pop("carol@example.test").callback(frozenset({"eve@example.test"}))
    connection = Connection(private.site)
    connection.send("GET", f"{STATUSES}?jid=alice@example.test&jid=bob@example.test&jid=carol@example.test"
                           "&jid=ALICE@example.test&req_jid=eve@example.test")
    other = Connection(private.site)
    other.send("GET", f"{STATUSES}?jid=bob@example.test&req_jid=eve@example.test")
    assert sorted(private.fetches) == ["alice@example.test", "bob@example.test"]
    private.fetches["bob@example.test"].callback(frozenset({"eve@example.test"}))
    assert connection.response() is None
    assert json.loads(other.response().body)["bob@example.test"]["state"] == "offline"
    private.fetches["alice@example.test"].callback(frozenset())
    body = json.loads(connection.response().body)
    assert {user: entry["state"] for user, entry in body.items()} == {
        "alice@example.test": "forbidden", "bob@example.test": "offline", "carol@example.test": "available"}


def test_statusesForbiddenEntriesAreTheForbiddenObject(private):
    """
    A refused entry is the type=json forbidden object for that user,
    whatever the reason.
    """
    connection = Connection(private.site)
    connection.send("GET", f"{STATUSES}?jid=alice@example.test&jid=ecila@example.test&jid=x@other.test"
                           "&req_jid=eve@example.test")
    private.fetches.pop("alice@example.test").callback(frozenset())
    private.fetches.pop("ecila@example.test").errback(Exception("boom"))
    body = json.loads(connection.response().body)
    for user, entry in body.items():
        assert entry == json.loads(private.get(f"jid={user}&type=json").body)
        assert entry["state"] == "forbidden"


def test_signedStatusesShowTheSignedUserOnly():
    """
    A requester's signature vouches for them about one user: in a batch,
    that user's entry is shown and the others are forbidden.
    """
    fixture = Fixture(public=False, keys=(KEY,), required=True)
    fixture.online(ALICE, state=State.AWAY)
    fixture.online("bob@example.test", state=State.AWAY)
    query = signedQuery(KEY, ALICE, ALICE, int(fixture.clock.seconds()) + 60)
    body = json.loads(batch(fixture, f"{query}&jid=bob@example.test").body)
    assert {user: entry["state"] for user, entry in body.items()} == {ALICE: "away", "bob@example.test": "forbidden"}
    assert fixture.fetches == {}


def test_statusesClientGoneBeforeTheRosters(private):
    """
    A client gone while its batch's rosters are read is not written to,
    and the late rosters cause no error.
    """
    connection = Connection(private.site)
    connection.send("GET", f"{STATUSES}?jid=alice@example.test&jid=bob@example.test&req_jid=eve@example.test")
    connection.channel.connectionLost(Exception("gone"))
    with capturedLogs() as events:
        private.fetches["alice@example.test"].callback(frozenset({"eve@example.test"}))
        private.fetches["bob@example.test"].callback(frozenset())
        gc.collect()
    assert connection.transport.value() == b""
    assert [event["log_format"] for event in events if "log_failure" in event] == []


def test_statusesOnlyByTheAllowedMethods(public):
    """
    statuses answers GET, HEAD, POST and OPTIONS only.
    """
    response = request(public.site, "DELETE", f"{STATUSES}?jid={ALICE}")
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD, POST, OPTIONS")


SETTINGS = """
[xmpp]
jid = presence.example.test
secret = s
domain = example.test

[http]
listen = tcp:0

[presence]
public = true
{presence}
"""


def test_lastSeenOffInEveryAnswer(public):
    """
    With last_seen = false, an offline user's since and last_seen are
    null in type=json and in statuses; their status still shows.
    """
    public.clock.advance(1000)
    public.online(ALICE, state=State.AWAY)
    public.tracker.unavailable(ALICE, "home", "Gone home", public.clock.seconds())
    assert json.loads(public.get(f"jid={ALICE}&type=json").body)["last_seen"] == "1970-01-01T00:16:40Z"
    public.site.reconfig(fromString(SETTINGS.format(presence="last_seen = false")), IMAGES)
    expected = {"jid": ALICE, "state": "offline", "label": "Unavailable", "status": "Gone home",
                "since": None, "idle_since": None, "last_seen": None}
    assert json.loads(public.get(f"jid={ALICE}&type=json").body) == expected
    assert json.loads(batch(public, f"jid={ALICE}").body) == {ALICE: expected}
    public.site.reconfig(fromString(SETTINGS.format(presence="")), IMAGES)
    assert json.loads(batch(public, f"jid={ALICE}").body)[ALICE]["last_seen"] == "1970-01-01T00:16:40Z"


def test_existingAnswersUnchanged(public):
    """
    The new answers leave the others as they were: the icon, the text.
    """
    public.online(ALICE, state=State.AWAY, status="Lunch")
    assert public.get(f"jid={ALICE}").body == IMAGES[State.AWAY].data
    assert public.get(f"jid={ALICE}&type=text&label=x&message=status").body == b"Lunch"
