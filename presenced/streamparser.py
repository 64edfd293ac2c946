"""
The XML parser of presenced's XMPP streams: twisted.words' expat element
stream, made safe for any namespace name and for oversized stanzas.

twisted.words has expat report qualified names as the namespace name and
the local name joined by a space.  Expat refuses (since 2.4.5, against
CVE-2022-25236) a namespace name that contains its separator, and a
namespace name may contain spaces: one stanza with an extension such as
C{<x xmlns='urn:a b'/>}, which servers forward as they are, would end the
whole stream with a syntax error.  Any user could so drop presenced's link
at will.  Here the separator is U+0001, which no XML 1.0 document can
contain.

A stanza may hold at most 20,000 elements, 32 levels of them and 1 MiB
(where Twisted allows 100,000 elements, any depth and 10 MiB, and ends the
stream when one goes over, which clears everyone's presence): a larger one
is skipped, and the stream goes on.  Presence is far smaller; the limits
leave room for a roster result of some 10,000 contacts.

An element's parent is held by a weak reference: a received stanza is no
reference cycle, so it is freed as soon as its handlers are done with it,
without waiting for the cyclic garbage collector, which otherwise spends
about a quarter of the time of a stream of presence updates.
"""

from __future__ import annotations

import pyexpat
import re
import weakref
from typing import Callable

from twisted.logger import Logger
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from presenced.ratelimit import Limits

#: Joins namespace names and local names in expat's reports; not a
#: character any XML 1.0 document may contain.
SEPARATOR = "\x01"

#: The most bytes a stream may have before its first stanza: its start
#: tag, kept to start a new parser with (see L{MarkupSkipper}).
MAX_STREAM_HEAD = 64 * 1024


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


class MarkupSkipper:
    """
    Finds where a stanza ends in raw XML, by counting its levels of tags,
    without parsing it or keeping any of it (but for a few bytes of a
    markup delimiter cut between two calls).

    It knows what XMPP streams may hold: tags, whose attribute values may
    hold C{>}; CDATA sections; and comments and processing instructions,
    which RFC 6120 forbids but are passed over all the same.

    @ivar levels: the levels of the stanza still open; the stanza ends
        when a tag brings them to 0.
    """

    _TAG_END = re.compile(b"['\">]")
    _ENDS = {"cdata": b"]]>", "comment": b"-->", "pi": b"?>"}

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self._state = "text"
        self._carry = b""
        self._quote = b""
        self._endTag = False
        self._last = b""

    def feed(self, data: bytes) -> bytes | None:
        """
        Pass over the next bytes.

        @return: the bytes after the stanza's end, once it has ended;
            C{None} until then.
        """
        if self._carry:
            data, self._carry = self._carry + data, b""
        end, at = len(data), 0
        while at < end:
            state = self._state
            if state == "text":
                at = data.find(b"<", at)
                if at < 0:
                    return None
                ahead = data[at + 1:at + 9]
                if not ahead or (ahead[:1] == b"!" and len(ahead) < 8
                             and (b"[CDATA[".startswith(ahead[1:]) or b"--".startswith(ahead[1:]))):
                    self._carry = data[at:]
                    return None
                if ahead.startswith(b"![CDATA["):
                    self._state, at = "cdata", at + 9
                elif ahead.startswith(b"!--"):
                    self._state, at = "comment", at + 4
                elif ahead[:1] == b"?":
                    self._state, at = "pi", at + 2
                else:
                    self._state, self._endTag, self._last = "tag", ahead[:1] == b"/", b"<"
                    at += 1
            elif state == "tag":
                found = self._TAG_END.search(data, at)
                if found is None:
                    self._last = data[-1:]
                    return None
                stop = found.start()
                if found.group() != b">":
                    self._state, self._quote, at = "quote", found.group(), stop + 1
                    continue
                empty = (data[stop - 1:stop] if stop > at else self._last) == b"/"
                self.levels += -1 if self._endTag else 0 if empty else 1
                self._state, at = "text", stop + 1
                if self.levels <= 0:
                    return data[at:]
            elif state == "quote":
                stop = data.find(self._quote, at)
                if stop < 0:
                    return None
                self._state, self._last, at = "tag", self._quote, stop + 1
            else:
                delimiter = self._ENDS[state]
                stop = data.find(delimiter, at)
                if stop < 0:
                    self._carry = data[max(at, end - len(delimiter) + 1):]
                    return None
                self._state, at = "text", stop + len(delimiter)
        return None


def _ignore(*event) -> None:
    """
    Take an expat event and do nothing with it.
    """


class NamespaceSafeElementStream(domish.ExpatElementStream):
    """
    domish's expat element stream with L{SEPARATOR} between namespace
    names and local names: it builds the same elements, as
    L{ReceivedElement}s, and skips a stanza that goes over its limits
    instead of failing the whole stream.

    A skipped stanza is not built past the point where it went over (what
    was built is dropped), the parser picks up again after its end tag,
    and C{StanzaSkippedEvent} is called with the reason.  Bytes are
    counted at the end of each L{parse}, and at the end of each stanza:
    what is built of a stanza never exceeds L{maxStanzaSize} by more than
    the bytes given to one L{parse}.  A tag larger than L{maxStanzaSize},
    which expat would hold whole, is passed over by a L{MarkupSkipper}
    instead, and a new parser takes up after the stanza.

    @cvar maxElementCount: elements in one stanza, the stanza included.
    @cvar maxDepth: levels of nesting in one stanza, the stanza being 1.
    @cvar maxStanzaSize: bytes in one stanza.
    """

    maxElementCount = 20_000
    maxDepth = 32
    maxStanzaSize = 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.StanzaSkippedEvent: Callable[[str], None] = lambda reason: None
        self._open: list[domish.Element] = []
        self.elementCount = 0
        self._received = 0
        self._stanzaStart = 0
        self._stanzaNamespaces = 0
        # Levels of the skipped stanza that are still open.
        self._skippedLevels = 0
        # The bytes before the first stanza, to start a new parser with.
        self._head = b""
        self._headDone = False
        # The bytes of an unfinished tag that expat holds.
        self._held = b""
        self._markupSkipper: MarkupSkipper | None = None
        self._newParser()

    def _build(self) -> None:
        """
        Build elements from expat's events.
        """
        parser = self.parser
        parser.StartElementHandler = self._onStartElement
        parser.EndElementHandler = self._onEndElement
        parser.CharacterDataHandler = self._onCdata
        parser.StartNamespaceDeclHandler = self._onStartNamespace
        parser.EndNamespaceDeclHandler = self._onEndNamespace

    def _skip(self, reason: str, levels: int) -> None:
        """
        Skip the current stanza, of which C{levels} levels are open: drop
        what was built of it, and only count levels until it ends.
        """
        self._open = []
        self.localPrefixes = {}
        self._skippedLevels = levels
        parser = self.parser
        parser.StartElementHandler = self._onSkippedStart
        parser.EndElementHandler = self._onSkippedEnd
        # Not None: PyPy's pyexpat would call that.
        parser.CharacterDataHandler = _ignore
        parser.StartNamespaceDeclHandler = _ignore
        parser.EndNamespaceDeclHandler = _ignore
        self.StanzaSkippedEvent(reason)

    def _onSkippedStart(self, name: str, attrs: dict) -> None:
        self._skippedLevels += 1

    def _onSkippedEnd(self, name: str) -> None:
        self._skippedLevels -= 1
        if not self._skippedLevels:
            del self.defaultNsStack[self._stanzaNamespaces:]
            self.elementCount = 0
            self._build()

    def _newParser(self) -> None:
        """
        Start parsing with a new expat parser.
        """
        self.parser = pyexpat.ParserCreate("UTF-8", SEPARATOR)
        self.parser.buffer_text = True
        if hasattr(self.parser, "SetReparseDeferralEnabled"):
            # Expat 2.6 may leave complete tags unparsed after a large one,
            # which would count as one huge tag; ours are capped anyway.
            self.parser.SetReparseDeferralEnabled(False)
        self._build()

    def parse(self, buffer: bytes) -> None:
        """
        Parse the next bytes of the stream.

        @raise domish.ParserError: if they are not well-formed XML.
        """
        if self._markupSkipper is not None:
            buffer = self._markupSkipper.feed(buffer)
            if buffer is None:
                return
            self._markupSkipper = None
        if not self._headDone:
            self._head += buffer
        data = self._held + buffer if self._held else buffer
        self._received += len(buffer)
        try:
            self.parser.Parse(buffer)
        except pyexpat.error as e:
            raise domish.ParserError(str(e))
        if not self._headDone and len(self._head) > MAX_STREAM_HEAD:
            raise domish.ParserError(f"more than {MAX_STREAM_HEAD} bytes before the first stanza")
        held = min(self._received - max(self.parser.CurrentByteIndex, 0), len(data))
        self._held = data[len(data) - held:] if held else b""
        if held > self.maxStanzaSize:
            self._skipHugeTag()
        elif self._open and self._received - self._stanzaStart > self.maxStanzaSize:
            self._skip(f"more than {self.maxStanzaSize} bytes", len(self._open))

    def _skipHugeTag(self) -> None:
        """
        Skip the stanza in which expat holds an unfinished tag larger than
        L{maxStanzaSize}: its rest is passed over unparsed by a
        L{MarkupSkipper}, and a new parser, started as the old one was,
        takes up after it.
        """
        if not self._headDone:
            raise domish.ParserError(f"a tag of more than {self.maxStanzaSize} bytes before the first stanza")
        levels = self._skippedLevels or len(self._open)
        if not self._skippedLevels:
            self.StanzaSkippedEvent(f"a tag of more than {self.maxStanzaSize} bytes")
        held, self._held = self._held, b""
        self._restart()
        self._markupSkipper = MarkupSkipper(levels)
        self.parse(held)

    def _restart(self) -> None:
        """
        Replace the parser with a new one that has read the bytes before
        the first stanza: the stream's start, with its namespaces.
        """
        self._newParser()
        self._open = []
        self._skippedLevels = 0
        self.elementCount = 0
        self.defaultNsStack = [""]
        self.localPrefixes = {}
        self.documentStarted = 0
        started, self.DocumentStartEvent = self.DocumentStartEvent, _ignore
        try:
            self.parser.Parse(self._head)
        finally:
            self.DocumentStartEvent = started
        self._received = len(self._head)

    def _onStartElement(self, name: str, attrs: dict) -> None:
        building = self._open
        if not building and self.documentStarted:
            self._stanzaStart = self.parser.CurrentByteIndex
            self._stanzaNamespaces = len(self.defaultNsStack)
            if not self._headDone:
                self._head, self._headDone = self._head[:self._stanzaStart], True
        self.elementCount += 1
        if self.elementCount > self.maxElementCount:
            self._skip(f"more than {self.maxElementCount} elements", len(building) + 1)
            return
        if len(building) >= self.maxDepth:
            self._skip(f"more than {self.maxDepth} levels of elements", len(building) + 1)
            return
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
            self.elementCount = 0
            self.DocumentStartEvent(element)
            return
        if building:
            parent = building[-1]
            parent.children.append(element)
            element.parent = parent
        building.append(element)

    def _onEndElement(self, _: str) -> None:
        if not self._open:
            self.DocumentEndEvent()
            return
        element = self._open.pop()
        if self._open:
            return
        self.elementCount = 0
        if self.parser.CurrentByteIndex - self._stanzaStart > self.maxStanzaSize:
            self.StanzaSkippedEvent(f"more than {self.maxStanzaSize} bytes")
            return
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
    An XMPP stream parsed with L{NamespaceSafeElementStream}.  Stanzas it
    skips are counted, and logged: the 1st, the 10th, the 100th, and so
    on, on each connection.

    @ivar skippedStanzas: how many stanzas were skipped on this connection.
    @ivar limits: told of each skipped stanza (as C{stanza_size}), if set.
    """

    log = Logger()
    skippedStanzas = 0
    limits: Limits | None = None

    def _initializeStream(self) -> None:
        super()._initializeStream()
        self.stream = NamespaceSafeElementStream()
        self.stream.DocumentStartEvent = self.onDocumentStart
        self.stream.ElementEvent = self.onElement
        self.stream.DocumentEndEvent = self.onDocumentEnd
        self.stream.StanzaSkippedEvent = self.onStanzaSkipped

    def onStanzaSkipped(self, reason: str) -> None:
        """
        Count a stanza that the parser skipped, and log it if it is the
        1st, 10th, 100th, ... on this connection.
        """
        self.skippedStanzas += 1
        if self.limits is not None:
            self.limits.count("stanza_size")
        if str(self.skippedStanzas).rstrip("0") == "1":
            self.log.warn("Skipped a stanza with {reason}: over the XMPP link's limits "
                          "({count} skipped on this connection)", reason=reason, count=self.skippedStanzas)
