"""
Presence answers: image, text and XML bodies, with their headers.

Whatever can be is prepared once: the headers of each kind of answer, the
icons, the XML of a stanza (by L{stanzaXML}, the one serializer of every
XML answer, called by the feed when the presence arrives)
and that of the offline and forbidden presences of recently asked users.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

from twisted.words.xish import domish

from presenced.presence import Shown, State

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
    caching: for anything but an image, the safety headers too.
    """
    headers = ((b"Content-Type", contentType),)
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

    def __init__(self, images: Mapping[State, Body], labels: Mapping[State, str]) -> None:
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
