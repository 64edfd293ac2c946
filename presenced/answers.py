"""
Presence answers: image, text, XML, JSON and badge bodies, with their
headers.

Whatever can be is prepared once: the headers of each kind of answer, the
icons, the XML of a stanza (by L{stanzaXML}, the one serializer of every
XML answer, called by the feed when the presence arrives)
and that of the offline and forbidden presences of recently asked users;
the JSON objects and badges of what recently asked users show.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, NamedTuple

from twisted.words.xish import domish

from presenced.config import defaultImageDirectory
from presenced.presence import Shown, State

if TYPE_CHECKING:
    from presenced.avatars import Picture

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: What answers that are not presence (redirects, errors, health) are sent
#: with: never kept.  Presence answers get theirs from L{presenced.delivery}.
NO_CACHE = b"no-cache, no-store, max-age=0"

#: Sent with answers that carry what users wrote (status texts, stanzas):
#: never sniff them as something else, never run anything in them.
_USER_CONTENT_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Content-Security-Policy", b"default-src 'none'; sandbox"),
)

Headers = tuple[tuple[bytes, bytes], ...]


def answerHeaders(contentType: bytes) -> Headers:
    """
    The headers of every answer of C{contentType}, all but its length and
    caching: for anything but the PNG icons, the safety headers too.
    """
    headers = ((b"Content-Type", contentType),)
    return headers if contentType == b"image/png" else headers + _USER_CONTENT_HEADERS


PNG = answerHeaders(b"image/png")
TEXT = answerHeaders(b"text/plain; charset=utf-8")
XML = answerHeaders(b"text/xml; charset=utf-8")
JSON = answerHeaders(b"application/json")
PRESENCE_JSON = answerHeaders(b"application/json; charset=utf-8")
SVG = answerHeaders(b"image/svg+xml; charset=utf-8")


class Body(NamedTuple):
    """
    An answer's headers (prepared once for each kind of answer) and bytes.
    """

    headers: Headers
    data: bytes


_PICTURE_HEADERS = {contentType: answerHeaders(contentType)
                    for contentType in (b"image/png", b"image/jpeg", b"image/gif", b"image/webp")}


@lru_cache(maxsize=1)
def defaultAvatar() -> Body:
    """
    The picture of users without an avatar that may be shown: the one
    shipped with presenced.
    """
    return Body(PNG, (defaultImageDirectory() / "avatar.png").read_bytes())


def avatarBody(picture: Picture | None) -> Body:
    """
    The answer showing C{picture}, or the default avatar.
    """
    if picture is None:
        return defaultAvatar()
    return Body(_PICTURE_HEADERS[picture.contentType], picture.data)


def loadImages(directory: Path) -> dict[State, Body]:
    """
    Read C{STATE.png} for every L{State} from C{directory}.
    """
    return {
        state: Body(PNG, (directory / f"{state.value}.png").read_bytes())
        for state in State
    }


#: The colour of a badge's right part, by state.
BADGE_COLOURS = MappingProxyType({
    State.AVAILABLE: "#4c1",
    State.CHAT: "#4c1",
    State.AWAY: "#dfb317",
    State.XA: "#fe7d37",
    State.DND: "#e05d44",
    State.OFFLINE: "#9f9f9f",
    State.FORBIDDEN: "#9f9f9f",
})

#: The most characters of each part of a badge.
MAX_BADGE_TEXT = 64

#: Characters that XML 1.0 does not allow in a document.
NOT_IN_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Badge(NamedTuple):
    """
    What a badge says: its left and right text, and the right part's colour.
    """

    label: str
    message: str
    colour: str


class AnswerRenderer:
    """
    Renders what a user shows as an image, text, XML, JSON or badge answer.

    @ivar images: the icon for each state.
    @ivar labels: the text for each state when the user set none.
    @ivar lastSeen: whether answers may tell when an offline user was last
        seen.
    """

    def __init__(self, images: Mapping[State, Body], labels: Mapping[State, str], lastSeen: bool = True) -> None:
        self.images = images
        self.labels = labels
        self.lastSeen = lastSeen

    def published(self, shown: Shown) -> Shown:
        """
        What answers may tell of C{shown}: all of it, or, when last-seen
        times are not to be told, an offline user's status without its
        times (C{since} of an offline user is when they went offline).
        """
        if self.lastSeen or shown.state is not State.OFFLINE or (shown.since is None and shown.lastSeen is None):
            return shown
        return Shown(State.OFFLINE, status=shown.status)

    def image(self, shown: Shown) -> Body:
        """
        The icon for C{shown}'s state.
        """
        return self.images[shown.state]

    def text(self, shown: Shown) -> Body:
        """
        The user's status text, or the label of their state.
        """
        text = shown.status or self.labels[shown.state]
        return Body(TEXT, text.encode("utf-8"))

    def xml(self, shown: Shown, user: str, requester: str | None) -> Body:
        """
        The presence stanza shown, an unavailable presence for an offline
        user, or a forbidden error presence.
        """
        if shown.stanza is not None:
            return Body(XML, shown.stanza)
        if shown.state is State.FORBIDDEN:
            return Body(XML, _forbidden(user, requester))
        return Body(XML, _unavailable(user, shown.status))

    def json(self, shown: Shown, user: str) -> Body:
        """
        The JSON object of what C{user} shows (see L{jsonObject}).
        """
        return Body(PRESENCE_JSON, self.jsonObject(shown, user))

    def jsonObject(self, shown: Shown, user: str) -> bytes:
        """
        What C{user} shows as one compact JSON object, as UTF-8:
        C{jid}, C{state}, C{label}, C{status}, C{since}, C{idle_since} and
        C{last_seen}, in that order, times in RFC 3339 UTC (whole seconds,
        C{Z}), C{null} for what is unknown.  The same object is always
        the same bytes.
        """
        state = shown.state
        return _jsonObject(user, state, self.labels[state], shown.status or None, shown.since,
                           shown.idleSince, shown.lastSeen if state is State.OFFLINE else None)

    def statuses(self, shown: Iterable[tuple[str, Shown]]) -> Body:
        """
        One JSON object mapping each user to the object of L{jsonObject}.
        """
        return Body(PRESENCE_JSON, b"{" + b",".join(
            _jsonText(user).encode("ascii") + b":" + self.jsonObject(what, user) for user, what in shown) + b"}")

    def badge(self, shown: Shown, user: str, label: str | None, showStatus: bool) -> Badge:
        """
        What the badge of C{shown} says: C{label}, or the user's local
        part; the state's label or, when C{showStatus} and the user set
        one, their status, cut to L{MAX_BADGE_TEXT} characters (the last
        an ellipsis); the state's colour.  Characters that cannot be in
        XML are left out of the status, and line breaks and tabs become
        spaces.
        """
        message = _badgeText(shown.status) if showStatus and shown.status else ""
        return Badge(user.partition("@")[0] if label is None else label,
                     message or self.labels[shown.state], BADGE_COLOURS[shown.state])

    def svg(self, shown: Shown, user: str, label: str | None, showStatus: bool) -> Body:
        """
        The badge of C{shown} as an SVG picture (see L{badge}).
        """
        return Body(SVG, _svg(self.badge(shown, user, label, showStatus)))

    def shields(self, shown: Shown, user: str, label: str | None, showStatus: bool) -> Body:
        """
        The badge of C{shown} as a shields.io endpoint answer (see L{badge}).
        """
        return Body(PRESENCE_JSON, _shields(self.badge(shown, user, label, showStatus)))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rfc3339(seconds: float | None) -> str | None:
    """
    The UTC time C{seconds} after the epoch in RFC 3339, whole seconds,
    with C{Z} (C{2026-12-02T19:00:05Z}); C{None} for C{None} or a time
    outside years 1 to 9999.
    """
    if seconds is None:
        return None
    try:
        moment = _EPOCH + timedelta(seconds=math.floor(seconds))
    except (OverflowError, ValueError):
        return None
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


_JSON_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))
_HTML_SPECIALS = re.compile("[<>&]")


def _jsonText(value: object) -> str:
    """
    C{value} as compact JSON in ASCII, with C{<}, C{>} and C{&} escaped
    too, so that it is safe inside an HTML C{<script>}.
    """
    text = _JSON_ENCODER.encode(value)
    if _HTML_SPECIALS.search(text) is None:
        return text
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@lru_cache(maxsize=4096)
def _jsonObject(user: str, state: State, label: str, status: str | None, since: float | None,
                idleSince: float | None, lastSeen: float | None) -> bytes:
    return _jsonText({
        "jid": user, "state": state.value, "label": label, "status": status, "since": rfc3339(since),
        "idle_since": rfc3339(idleSince), "last_seen": rfc3339(lastSeen),
    }).encode("ascii")


_BADGE_SPACES = str.maketrans("\t\n\r", "   ")


@lru_cache(maxsize=1024)
def _badgeText(text: str) -> str:
    text = NOT_IN_XML.sub("", text).translate(_BADGE_SPACES)
    return text if len(text) <= MAX_BADGE_TEXT else text[:MAX_BADGE_TEXT - 1] + "\u2026"


#: Estimated advance widths, in tenths of a pixel, of Verdana (or DejaVu
#: Sans, close to it) at 11px: a few classes of characters, the rest as a
#: typical lower-case letter or, for upper case, a capital.
_NARROW = dict.fromkeys("ijl.,:;!|'`", 30)
_THIN = dict.fromkeys(" frtI()[]{}/\\-\"*", 45)
_WIDE = dict.fromkeys("mwMW@%", 105)
_CHARACTER_WIDTHS = {**_NARROW, **_THIN, **_WIDE}
_LETTER, _CAPITAL, _FULL = 70, 78, 110


@lru_cache(maxsize=4096)
def textWidth(text: str) -> int:
    """
    The estimated width of C{text} in a badge, in whole pixels: wide and
    full-width East Asian characters a full em, combining and other
    zero-width characters nothing.
    """
    tenths = 0
    for character in text:
        width = _CHARACTER_WIDTHS.get(character)
        if width is None:
            if character.isascii():
                width = _CAPITAL if character.isupper() else _LETTER
            elif unicodedata.combining(character) or unicodedata.category(character) in ("Mn", "Me", "Cf"):
                width = 0
            elif unicodedata.east_asian_width(character) in ("W", "F"):
                width = _FULL
            else:
                width = _CAPITAL if character.isupper() else _LETTER
        tenths += width
    return -(-tenths // 10)


#: The space left and right of each part's text, in pixels.
_BADGE_PADDING = 6

_SVG_TEMPLATE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img">'
    "<title>{title}</title>"
    '<clipPath id="presenced-badge"><rect width="{width}" height="20" rx="3"/></clipPath>'
    '<g clip-path="url(#presenced-badge)">'
    '<rect width="{left}" height="20" fill="#555"/>'
    '<rect x="{left}" width="{right}" height="20" fill="{colour}"/></g>'
    '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
    '<text x="{labelCentre}" y="14" textLength="{labelWidth}">{label}</text>'
    '<text x="{messageCentre}" y="14" textLength="{messageWidth}">{message}</text></g></svg>'
)


@lru_cache(maxsize=1024)
def _svg(badge: Badge) -> bytes:
    labelWidth, messageWidth = textWidth(badge.label), textWidth(badge.message)
    left, right = labelWidth + 2 * _BADGE_PADDING, messageWidth + 2 * _BADGE_PADDING
    label, message = _escapeText(badge.label), _escapeText(badge.message)
    return _SVG_TEMPLATE.format(
        width=left + right, left=left, right=right, colour=badge.colour, title=f"{label}: {message}",
        label=label, labelWidth=labelWidth, labelCentre=left / 2,
        message=message, messageWidth=messageWidth, messageCentre=left + right / 2,
    ).encode("utf-8")


@lru_cache(maxsize=1024)
def _shields(badge: Badge) -> bytes:
    return _jsonText({"schemaVersion": 1, "label": badge.label, "message": badge.message,
                      "color": badge.colour}).encode("ascii")


@lru_cache(maxsize=1024)
def _unavailable(user: str, status: str | None) -> bytes:
    presence = domish.Element((NS_CLIENT, "presence"))
    presence["type"] = "unavailable"
    presence["from"] = user
    if status:
        presence.addElement("status", content=status)
    return stanzaXML(presence)


@lru_cache(maxsize=1024)
def _forbidden(user: str, requester: str | None) -> bytes:
    presence = domish.Element((NS_CLIENT, "presence"))
    presence["type"] = "error"
    presence["from"] = user
    if requester is not None:
        presence["to"] = requester
    error = presence.addElement("error")
    error["code"] = "403"
    error["type"] = "auth"
    error.addElement((NS_STANZAS, "forbidden"))
    return stanzaXML(presence)


def stanzaXML(stanza: domish.Element) -> bytes:
    """
    Serialise a received stanza on its own, as UTF-8, as a client sees it,
    with its namespace left implicit: the stanza's elements, wherever they
    are, are written in no namespace, as the stanza itself is.  Elements
    the sender put in no namespace, which RFC 6120 does not allow, are
    left out, so that they cannot pass for the stanza's own.

    Unlike domish's serializer, which writes namespace names as they are,
    every value is escaped (whitespace in attributes too, so that it reads
    back the same), so a hostile stanza cannot change the structure of the
    XML answer; and the tree is walked without recursion, however deep.
    Elements are written in the default namespace form; the prefixes an
    element declared are declared again (the stanza's namespace as
    C{jabber:client}), and namespaced attributes get prefixes of their own
    where they have none (C{xml:} stays).
    """
    own = stanza.uri
    out: list[str] = []
    # Per open element: its children still to write, its end tag, and the
    # namespace it puts in scope.
    unfinished: list[tuple[Iterator, str, str]] = [(iter((stanza,)), "", "")]
    while unfinished:
        children, end, inScope = unfinished[-1]
        for child in children:
            if isinstance(child, str):
                out.append(_escapeText(child))
                continue
            uri = child.uri
            if not uri and own:
                continue
            uri = inScope if uri is None else "" if uri == own else uri
            name = child.name
            out.append("<" + name if uri == inScope else f"<{name} xmlns='{_escapeAttribute(uri)}'")
            declared = None
            if child.localPrefixes:
                declared = {}
                for prefix, namespace in child.localPrefixes.items():
                    declared[prefix] = namespace = NS_CLIENT if namespace == own else namespace
                    out.append(f" xmlns:{prefix}='{_escapeAttribute(namespace)}'")
            for attribute, value in child.attributes.items():
                if attribute.__class__ is tuple:
                    if declared is None:
                        declared = {}
                    attribute = _prefixed(attribute, own, declared, out)
                out.append(f" {attribute}='{_escapeAttribute(value)}'")
            content = child.children
            if not content:
                out.append("/>")
            elif len(content) == 1 and content[0].__class__ is str:
                out.append(f">{_escapeText(content[0])}</{name}>")
            else:
                out.append(">")
                unfinished.append((iter(content), f"</{name}>", uri))
                break
        else:
            unfinished.pop()
            out.append(end)
    return "".join(out).encode("utf-8")


_TEXT_SPECIALS = re.compile("[&<>\r]")
_ATTRIBUTE_SPECIALS = re.compile("[&<>\r'\"\t\n]")


def _escapeText(text: str) -> str:
    if not _TEXT_SPECIALS.search(text):
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escapeAttribute(value: str) -> str:
    if not _ATTRIBUTE_SPECIALS.search(value):
        return value
    return (_escapeText(value).replace("'", "&apos;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;"))


def _prefixed(name: tuple[str, str], own: str, declared: dict[str, str], out: list[str]) -> str:
    """
    The prefixed name of a namespaced attribute: with the prefix that
    C{declared} (prefix to namespace, on this element) has for its
    namespace, or a new one, declared in C{out} and added to C{declared}.
    The stanza's own namespace C{own} is written as C{jabber:client}.
    """
    namespace, local = name
    if namespace == NS_XML:
        return "xml:" + local
    if namespace == own:
        namespace = NS_CLIENT
    for prefix, known in declared.items():
        if known == namespace:
            return prefix + ":" + local
    prefix = next(p for p in (f"ns{n}" for n in itertools.count()) if p not in declared)
    declared[prefix] = namespace
    out.append(f" xmlns:{prefix}='{_escapeAttribute(namespace)}'")
    return f"{prefix}:{local}"
