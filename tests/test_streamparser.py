"""
Tests for L{presenced.streamparser}: the XML parser of presenced's streams.
"""

import pytest
from twisted.words.xish import domish

from presenced.streamparser import NamespaceSafeElementStream

STREAM = (
    "<stream:stream xmlns='jabber:component:accept' "
    "xmlns:stream='http://etherx.jabber.org/streams' id='s'>"
)


def parse(stream, xml: str) -> list[domish.Element]:
    elements = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = elements.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(xml.encode("utf-8"))
    return elements


def describe(element: domish.Element) -> tuple:
    return (element.uri, element.name, element.defaultUri, element.attributes, element.localPrefixes,
            [describe(c) if isinstance(c, domish.Element) else c for c in element.children])


def test_sameElementsAsDomish():
    """
    Ordinary stanzas are parsed into the same elements as domish's own
    expat stream makes.
    """
    xml = (
        STREAM + "<presence from='a@example.test/r' xml:lang='en'><show>away</show>"
        "<status xml:lang='de'>Weg &amp; da</status><p:x xmlns:p='urn:p' p:a='1' b='2'><y/></p:x>"
        "<c xmlns='http://jabber.org/protocol/caps' ver='v'/></presence><message><body>hi</body></message>"
    )
    ours = parse(NamespaceSafeElementStream(), xml)
    theirs = parse(domish.ExpatElementStream(), xml)
    assert [describe(e) for e in ours] == [describe(e) for e in theirs]
    assert len(ours) == 2


def test_namespaceWithSpace():
    """
    A namespace name with a space in it, which domish's stream refuses as
    a syntax error, is parsed, and the stream goes on.
    """
    elements = parse(NamespaceSafeElementStream(),
                     STREAM + "<presence><x xmlns='urn:a b' xmlns:q='urn:c d' q:k='v'/></presence><iq/>")
    x = elements[0].firstChildElement()
    assert (x.uri, x.name, x.attributes) == ("urn:a b", "x", {("urn:c d", "k"): "v"})
    assert elements[1].name == "iq"
    with pytest.raises(domish.ParserError):
        parse(domish.ExpatElementStream(), STREAM + "<presence><x xmlns='urn:a b'/></presence>")


def test_elementCountLimit():
    """
    A stanza with more elements than the limit is a parse error.
    """
    stream = NamespaceSafeElementStream()
    stream.maxElementCount = 3
    parse(stream, STREAM + "<presence><a/><b/></presence>")
    with pytest.raises(domish.ParserError):
        parse(stream, "<presence><a/><b/><c/></presence>")
