"""
The XML parser of presenced's XMPP streams: twisted.words' expat element
stream, made safe for any namespace name.

twisted.words has expat report qualified names as the namespace name and
the local name joined by a space.  Expat refuses (since 2.4.5, against
CVE-2022-25236) a namespace name that contains its separator, and a
namespace name may contain spaces: one stanza with an extension such as
C{<x xmlns='urn:a b'/>}, which servers forward as they are, would end the
whole stream with a syntax error.  Any user could so drop presenced's link
at will.  Here the separator is U+0001, which no XML 1.0 document can
contain.
"""

from __future__ import annotations

import pyexpat

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

#: Joins namespace names and local names in expat's reports; not a
#: character any XML 1.0 document may contain.
SEPARATOR = "\x01"


class NamespaceSafeElementStream(domish.ExpatElementStream):
    """
    domish's expat element stream with L{SEPARATOR} between namespace
    names and local names: it builds the same elements, with the same
    limits on stanza size and element count.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parser = pyexpat.ParserCreate("UTF-8", SEPARATOR)
        self.parser.StartElementHandler = self._onStartElement
        self.parser.EndElementHandler = self._onEndElement
        self.parser.CharacterDataHandler = self._onCdata
        self.parser.StartNamespaceDeclHandler = self._onStartNamespace
        self.parser.EndNamespaceDeclHandler = self._onEndNamespace

    def _onStartElement(self, name: str, attrs: dict) -> None:
        uri, _, local = name.rpartition(SEPARATOR)
        for key in [key for key in attrs if SEPARATOR in key]:
            namespace, _, attribute = key.rpartition(SEPARATOR)
            attrs[(namespace, attribute)] = attrs.pop(key)
        element = domish.Element((uri, local), self.defaultNsStack[-1], attrs, self.localPrefixes)
        self.localPrefixes = {}
        if not self.documentStarted:
            self.documentStarted = 1
            self.DocumentStartEvent(element)
            return
        self.elementCount += 1
        if self.elementCount > self.maxElementCount:
            raise domish.ParserError("Maximum element count exceeded")
        if self.currElem is not None:
            self.currElem.children.append(element)
            element.parent = self.currElem
        self.currElem = element


class LinkXmlStream(xmlstream.XmlStream):
    """
    An XMPP stream parsed with L{NamespaceSafeElementStream}.
    """

    def _initializeStream(self) -> None:
        super()._initializeStream()
        self.stream = NamespaceSafeElementStream()
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd
