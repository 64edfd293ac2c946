"""
Presence answers: image, text and XML bodies, with their headers.

Whatever can be is prepared once: the headers of each kind of answer, the
icons, the XML of a stanza (by the XMPP side, when the presence arrives)
and that of the offline and forbidden presences of recently asked users.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from twisted.words.xish import domish

from presenced.presence import Shown, State

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

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
    The headers of every answer of C{contentType}, all but its length:
    never cached, and for anything but an image, the safety headers.
    """
    headers = ((b"Cache-Control", NO_CACHE), (b"Content-Type", contentType))
    return headers if contentType.startswith(b"image/") else headers + _USER_CONTENT_HEADERS


PNG = answerHeaders(b"image/png")
TEXT = answerHeaders(b"text/plain; charset=utf-8")
XML = answerHeaders(b"text/xml; charset=utf-8")
JSON = answerHeaders(b"application/json")


class Body(NamedTuple):
    """
    An answer's headers (prepared once for each kind of answer) and bytes.
    """

    headers: Headers
    data: bytes


def loadImages(directory: Path) -> dict[State, Body]:
    """
    Read C{STATE.png} for every L{State} from C{directory}.
    """
    return {
        state: Body(PNG, (directory / f"{state.value}.png").read_bytes())
        for state in State
    }


class AnswerRenderer:
    """
    Renders what a user shows as an image, text or XML answer.

    @ivar images: the icon for each state.
    @ivar labels: the text for each state when the user set none.
    """

    def __init__(self, images: dict[State, Body], labels: dict[State, str]) -> None:
        self.images = images
        self.labels = labels

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


@lru_cache(maxsize=1024)
def _unavailable(user: str, status: str | None) -> bytes:
    presence = domish.Element((None, "presence"))
    presence["type"] = "unavailable"
    presence["from"] = user
    if status:
        presence.addElement("status", content=status)
    return presence.toXml().encode("utf-8")


@lru_cache(maxsize=1024)
def _forbidden(user: str, requester: str | None) -> bytes:
    presence = domish.Element((None, "presence"))
    presence["type"] = "error"
    presence["from"] = user
    if requester is not None:
        presence["to"] = requester
    error = presence.addElement("error")
    error["code"] = "403"
    error["type"] = "auth"
    error.addElement((NS_STANZAS, "forbidden"))
    return presence.toXml().encode("utf-8")
