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

An element's parent is held by a weak reference: a received stanza is no
reference cycle, so it is freed as soon as its handlers are done with it,
without waiting for the cyclic garbage collector, which otherwise spends
about a quarter of the time of a stream of presence updates.
"""

from __future__ import annotations

import pyexpat
import weakref

from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

#: Joins namespace names and local names in expat's reports; not a
#: character any XML 1.0 document may contain.
SEPARATOR = "\x01"


class ReceivedElement(domish.Element):
    """
    A received element, which holds its parent by a weak reference: its
    C{parent} is the parent element while that exists, else C{None}.

    It has the attributes of any domish element, set as the parser found
    them.
    """

    _parentReference: weakref.ref | None = None

    def __init__(self, uri: str, name: str, defaultUri: str, attributes: dict, localPrefixes: dict) -> None:
        self.uri = uri
        self.name = name
        self.defaultUri = defaultUri
        self.attributes = attributes
        self.localPrefixes = localPrefixes
        self.children = []

    @property
    def parent(self) -> domish.Element | None:
        reference = self._parentReference
        return None if reference is None else reference()

    @parent.setter
    def parent(self, element: domish.Element | None) -> None:
        self._parentReference = None if element is None else weakref.ref(element)


class NamespaceSafeElementStream(domish.ExpatElementStream):
    """
    domish's expat element stream with L{SEPARATOR} between namespace
    names and local names: it builds the same elements, with the same
    limits on stanza size and element count, as L{ReceivedElement}s.
    """

    def __init__(self) -> None:
        super().__init__()
        self.elementCount, self.maxElementCount = 0, 100_000
        self._open: list[domish.Element] = []
        self.parser = pyexpat.ParserCreate("UTF-8", SEPARATOR)
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._onStartElement
        self.parser.EndElementHandler = self._onEndElement
        self.parser.CharacterDataHandler = self._onCdata
        self.parser.StartNamespaceDeclHandler = self._onStartNamespace
        self.parser.EndNamespaceDeclHandler = self._onEndNamespace

    def _onStartElement(self, name: str, attrs: dict) -> None:
        uri, _, local = name.rpartition(SEPARATOR)
        if attrs:
            for key in [key for key in attrs if SEPARATOR in key]:
                namespace, _, attribute = key.rpartition(SEPARATOR)
                attrs[(namespace, attribute)] = attrs.pop(key)
        defaultUri = self.defaultNsStack[-1]
        if defaultUri is None and uri not in self.localPrefixes.values():
            defaultUri = uri
        element = ReceivedElement(uri, local, defaultUri, attrs, self.localPrefixes)
        self.localPrefixes = {}
        if not self.documentStarted:
            self.documentStarted = 1
            self.DocumentStartEvent(element)
            return
        self.elementCount += 1
        if self.elementCount > self.maxElementCount:
            raise domish.ParserError("Maximum element count exceeded")
        if self._open:
            parent = self._open[-1]
            parent.children.append(element)
            element.parent = parent
        self._open.append(element)

    def _onEndElement(self, _: str) -> None:
        if not self._open:
            self.DocumentEndEvent()
            return
        element = self._open.pop()
        if self._open:
            return
        self.elementCount = 0
        self.stanzaSize = 0
        self.ElementEvent(element)

    def _onCdata(self, data: str) -> None:
        if self._open:
            children = self._open[-1].children
            if children and isinstance(children[-1], str):
                children[-1] += data
            else:
                children.append(data)


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
