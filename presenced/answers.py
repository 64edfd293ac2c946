"""
The bodies of presence answers: image, text and XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted.words.xish import domish

from presenced.presence import Shown, State

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@dataclass(frozen=True)
class Body:
    """
    An answer's content type and bytes.
    """

    contentType: bytes
    data: bytes


def loadImages(directory: Path) -> dict[State, Body]:
    """
    Read C{STATE.png} for every L{State} from C{directory}.
    """
    return {
        state: Body(b"image/png", (directory / f"{state.value}.png").read_bytes())
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
        return Body(b"text/plain; charset=utf-8", text.encode("utf-8"))

    def xml(self, shown: Shown, user: str, requester: str | None) -> Body:
        """
        The presence stanza shown, an unavailable presence for an offline
        user, or a forbidden error presence.
        """
        if shown.stanza is not None:
            xml = shown.stanza
        elif shown.state is State.FORBIDDEN:
            xml = _forbidden(user, requester)
        else:
            xml = _unavailable(user, shown.status)
        return Body(b"text/xml; charset=utf-8", xml.encode("utf-8"))


def _unavailable(user: str, status: str | None) -> str:
    presence = domish.Element((None, "presence"))
    presence["type"] = "unavailable"
    presence["from"] = user
    if status:
        presence.addElement("status", content=status)
    return presence.toXml()


def _forbidden(user: str, requester: str | None) -> str:
    presence = domish.Element((None, "presence"))
    presence["type"] = "error"
    presence["from"] = user
    if requester is not None:
        presence["to"] = requester
    error = presence.addElement("error")
    error["code"] = "403"
    error["type"] = "auth"
    error.addElement((NS_STANZAS, "forbidden"))
    return presence.toXml()
