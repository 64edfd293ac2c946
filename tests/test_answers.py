"""
Tests for L{presenced.answers}: the JSON objects and badges of what users
show, rendered without HTTP.
"""

import json
from xml.dom import minidom
from xml.etree import ElementTree

import attr
import pytest

from presenced.answers import (BADGE_COLOURS, MAX_BADGE_TEXT, AnswerRenderer, answerHeaders, loadImages, rfc3339,
                               textWidth)
from presenced.config import DEFAULT_LABELS, defaultImageDirectory
from presenced.presence import OFFLINE, PresenceTracker, ResourcePresence, Shown, State

IMAGES = loadImages(defaultImageDirectory())
ALICE = "alice@example.test"
SVG = "{http://www.w3.org/2000/svg}"
#: 2026-12-02T19:00:05Z
NOON = 1796238005.0
HOSTILE = "</text><script>alert(1)</script>\x01\x1f\ufffe\uffff\u2028\u2029 & 'q' \"qq\" ]]>"

renderer = AnswerRenderer(IMAGES, DEFAULT_LABELS)


def jsonOf(shown, user=ALICE, using=renderer):
    return json.loads(using.jsonObject(shown, user))


def online(state=State.AVAILABLE, status=None, idleSince=None, received=NOON, resource="home", priority=0):
    return ResourcePresence(resource=resource, state=state, status=status, idleSince=idleSince,
                            received=received, priority=priority, stanza=b"<presence/>")


def test_jsonObjectFieldsInOrder():
    """
    The JSON object has jid, state, label, status, since, idle_since and
    last_seen, in that order.
    """
    tracker = PresenceTracker()
    tracker.available(ALICE, online(State.AWAY, "Lunch"))
    assert renderer.jsonObject(tracker.shown(ALICE), ALICE) == (
        b'{"jid":"alice@example.test","state":"away","label":"Away","status":"Lunch",'
        b'"since":"2026-12-02T19:00:05Z","idle_since":null,"last_seen":null}')


@pytest.mark.parametrize("state", list(State))
def test_jsonStateAndLabel(state):
    """
    state is the state's API name, and label its configured text.
    """
    labels = {s: f"label of {s.value}" for s in State}
    body = jsonOf(Shown(state), using=AnswerRenderer(IMAGES, labels))
    assert (body["state"], body["label"]) == (state.value, f"label of {state.value}")


@pytest.mark.parametrize("status", [None, ""])
def test_jsonStatusWithoutOneIsNull(status):
    """
    A user without a status message has a null status: neither the
    string "null" nor the label.
    """
    assert jsonOf(Shown(State.AWAY, status=status))["status"] is None


def test_jsonOfAnUnknownUserIsAllNull():
    """
    What nothing is known of is offline, with every other field null.
    """
    assert jsonOf(OFFLINE) == {"jid": ALICE, "state": "offline", "label": "Unavailable", "status": None,
                               "since": None, "idle_since": None, "last_seen": None}


@pytest.mark.parametrize("seconds, text", [
    (NOON, "2026-12-02T19:00:05Z"),
    (NOON + 0.999, "2026-12-02T19:00:05Z"),
    (0, "1970-01-01T00:00:00Z"),
    (-0.5, "1969-12-31T23:59:59Z"),
    (-62135596800, "0001-01-01T00:00:00Z"),
    (253402300799, "9999-12-31T23:59:59Z"),
    (253402300800, None),
    (-62135596801, None),
    (1e300, None),
    (None, None),
])
def test_rfc3339(seconds, text):
    """
    Times are UTC in RFC 3339 with Z, whole seconds (rounded down), four
    digits of year; one that no four digits can write is unknown.
    """
    assert rfc3339(seconds) == text


def test_idleSinceOfTheShownResource():
    """
    idle_since is the XEP-0319 idle time of the resource shown, not of
    another one.
    """
    tracker = PresenceTracker()
    tracker.available(ALICE, online(State.XA, idleSince=NOON - 3600, resource="desk"))
    tracker.available(ALICE, online(State.CHAT, resource="phone", received=NOON + 60))
    assert jsonOf(tracker.shown(ALICE))["idle_since"] is None
    tracker.unavailable(ALICE, "phone", None, NOON + 120)
    assert jsonOf(tracker.shown(ALICE))["idle_since"] == "2026-12-02T18:00:05Z"


def test_lastSeenOfAnOfflineUser():
    """
    An offline user's last_seen is when their last resource went offline;
    their since too, and their status is that of the unavailable presence.
    """
    tracker = PresenceTracker()
    tracker.available(ALICE, online(State.AWAY))
    tracker.unavailable(ALICE, "home", "Gone home", NOON + 65)
    body = jsonOf(tracker.shown(ALICE))
    assert (body["state"], body["status"], body["since"], body["last_seen"]) == (
        "offline", "Gone home", "2026-12-02T19:01:10Z", "2026-12-02T19:01:10Z")


def test_lastSeenOnlyForOfflineUsers():
    """
    An online user's last_seen is null, even when the model knows it.
    """
    assert jsonOf(Shown(State.AWAY, lastSeen=NOON))["last_seen"] is None


def test_lastSeenWithheld():
    """
    Where last-seen times are not told, an offline user's since and
    last_seen are null and their status stays; online users keep since.
    """
    withholding = AnswerRenderer(IMAGES, DEFAULT_LABELS, lastSeen=False)
    tracker = PresenceTracker()
    tracker.available(ALICE, online(State.AWAY))
    assert jsonOf(withholding.published(tracker.shown(ALICE)), using=withholding)["since"] == "2026-12-02T19:00:05Z"
    tracker.unavailable(ALICE, "home", "Gone home", NOON + 65)
    body = jsonOf(withholding.published(tracker.shown(ALICE)), using=withholding)
    assert (body["status"], body["since"], body["last_seen"]) == ("Gone home", None, None)
    assert renderer.published(tracker.shown(ALICE)) is tracker.shown(ALICE)


def test_jsonEscapesWhatAHostileStatusHolds():
    """
    A hostile status reads back as it was, and its JSON is ASCII without
    <, >, & or raw line separators, so that it is safe inside a script.
    """
    body = renderer.jsonObject(Shown(State.AWAY, status=HOSTILE + "\u65e5\U0001f600"), ALICE)
    assert json.loads(body)["status"] == HOSTILE + "\u65e5\U0001f600"
    assert body.isascii()
    assert not {b"<", b">", b"&"} & {bytes([byte]) for byte in body}
    assert b"\\u003c/script\\u003e" in body


def test_sameObjectSameBytes():
    """
    Equal things shown give the same bytes, however they were made.
    """
    first = renderer.jsonObject(Shown(State.DND, status="Focus", since=NOON, idleSince=NOON - 1), ALICE)
    second = renderer.jsonObject(
        attr.evolve(online(State.DND, status="Focus", idleSince=NOON - 1, resource="other"), since=NOON), ALICE)
    assert first == second


def test_statusesMapEachUserToItsObject():
    """
    The batch answer maps each user, in order, to their JSON object.
    """
    shown = [(ALICE, Shown(State.AWAY, status="Lunch")), ("bob@example.test", OFFLINE)]
    body = renderer.statuses(shown)
    assert body.data == (b'{"alice@example.test":' + renderer.jsonObject(shown[0][1], ALICE)
                         + b',"bob@example.test":' + renderer.jsonObject(OFFLINE, "bob@example.test") + b"}")
    assert list(json.loads(body.data)) == [ALICE, "bob@example.test"]


def test_badgeDefaults():
    """
    A badge says the user's local part and the state's label.
    """
    assert renderer.badge(Shown(State.AWAY, status="Lunch"), ALICE, None, False) == ("alice", "Away", "#dfb317")


def test_badgeWithLabelAndStatus():
    """
    A badge may say a label of the caller's and the user's status.
    """
    assert renderer.badge(Shown(State.AWAY, status="Lunch"), ALICE, "Me", True) == ("Me", "Lunch", "#dfb317")


@pytest.mark.parametrize("status", [None, "", "\x01\ufffe"])
def test_badgeWithoutStatusSaysTheLabel(status):
    """
    Asked for the status of a user who has none (or only characters that
    XML cannot hold), a badge says the state's label.
    """
    assert renderer.badge(Shown(State.DND, status=status), ALICE, None, True).message == "Do not disturb"


def test_badgeStatusCutWithAnEllipsis():
    """
    A status longer than 64 characters is cut to 64, the last an
    ellipsis; one of 64 is whole.
    """
    assert renderer.badge(Shown(State.AWAY, status="x" * 64), ALICE, None, True).message == "x" * 64
    message = renderer.badge(Shown(State.AWAY, status="y" * 65), ALICE, None, True).message
    assert (len(message), message) == (MAX_BADGE_TEXT, "y" * 63 + "\u2026")


def test_badgeStatusWithoutControlCharacters():
    """
    Characters XML cannot hold are left out of a badge's status, and line
    breaks and tabs become spaces.
    """
    status = "a\x00b\x1b\ufffe\uffffc\td\r\ne"
    assert renderer.badge(Shown(State.AWAY, status=status), ALICE, None, True).message == "abc d  e"


@pytest.mark.parametrize("state, colour", [
    (State.AVAILABLE, "#4c1"), (State.CHAT, "#4c1"), (State.AWAY, "#dfb317"), (State.XA, "#fe7d37"),
    (State.DND, "#e05d44"), (State.OFFLINE, "#9f9f9f"), (State.FORBIDDEN, "#9f9f9f"),
])
def test_badgeColours(state, colour):
    """
    Each state has its colour, drawn in the badge's right part.
    """
    assert BADGE_COLOURS[state] == colour
    svg = ElementTree.fromstring(renderer.svg(Shown(state), ALICE, None, False).data)
    assert [rect.get("fill") for rect in svg.iter(SVG + "rect")][1:] == ["#555", colour]


def badgeTexts(data):
    svg = ElementTree.fromstring(data)
    return svg.findtext(SVG + "title"), [text.text for text in svg.iter(SVG + "text")]


def test_svgOfAHostileStatusIsWellFormedText():
    """
    A hostile status is text in the badge, never markup: the SVG is
    well-formed, its title holds the whole text, and its two texts say
    the label and the status.
    """
    data = renderer.svg(Shown(State.AWAY, status=HOSTILE), ALICE, None, True).data
    minidom.parseString(data)
    shownStatus = "</text><script>alert(1)</script>\u2028\u2029 & 'q' \"qq\" ]]>"
    assert badgeTexts(data) == (f"alice: {shownStatus}", ["alice", shownStatus])
    assert b"<script" not in data


def test_svgOfAHostileLabel():
    """
    A label with markup in it is text too.
    """
    data = renderer.svg(OFFLINE, ALICE, "<b>&amp;", False).data
    assert badgeTexts(data) == ("<b>&amp;: Unavailable", ["<b>&amp;", "Unavailable"])


def badgeGeometry(data):
    svg = ElementTree.fromstring(data)
    rects = list(svg.iter(SVG + "rect"))
    texts = list(svg.iter(SVG + "text"))
    return (int(svg.get("width")), int(rects[1].get("width")), int(rects[2].get("width")),
            [int(text.get("textLength")) for text in texts], [float(text.get("x")) for text in texts])


def test_svgWidthsFollowTheText():
    """
    Each part is as wide as its estimated text and some padding, the
    whole badge as both, and each text is centred in its part.
    """
    total, left, right, lengths, centres = badgeGeometry(
        renderer.svg(Shown(State.AWAY, status="Lunch"), ALICE, "presence of alice", True).data)
    assert lengths == [textWidth("presence of alice"), textWidth("Lunch")]
    assert (left - lengths[0], right - lengths[1]) == (12, 12)
    assert total == left + right
    assert centres == [left / 2, left + right / 2]


def test_textWidthEstimate():
    """
    Wider letters count wider, narrow ones narrower; wide East Asian
    characters a full em; combining marks nothing.
    """
    assert textWidth("iiii") < textWidth("aaaa") < textWidth("MMMM")
    assert textWidth("\u65e5\u672c") == 22
    assert textWidth("e\u0301") == textWidth("e")
    assert textWidth("") == 0


def test_shieldsEndpoint():
    """
    The shields.io endpoint answer has the badge's label, message and
    colour, escaped as any JSON answer.
    """
    body = renderer.shields(Shown(State.XA, status="<away>"), ALICE, None, True).data
    assert json.loads(body) == {"schemaVersion": 1, "label": "alice", "message": "<away>", "color": "#fe7d37"}
    assert list(json.loads(body)) == ["schemaVersion", "label", "message", "color"]
    assert b"<" not in body


@pytest.mark.parametrize("contentType", [b"image/svg+xml; charset=utf-8", b"application/json; charset=utf-8"])
def test_userContentAnswersCarrySafetyHeaders(contentType):
    """
    Badges and JSON carry what users wrote: they are never sniffed and
    run nothing; the PNG icons need neither header.
    """
    headers = dict(answerHeaders(contentType))
    assert headers[b"X-Content-Type-Options"] == b"nosniff"
    assert b"sandbox" in headers[b"Content-Security-Policy"]
    assert b"X-Content-Type-Options" not in dict(answerHeaders(b"image/png"))
