"""
Tests for L{presenced.streamparser}: the XML parser of presenced's streams.
"""

import gc
import platform
import pyexpat
import weakref

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
            element.parent and element.parent.name,
            [describe(c) if isinstance(c, domish.Element) else c for c in element.children])


def test_sameElementsAsDomish():
    """
    Ordinary stanzas are parsed into the same elements as domish's own
    expat stream makes.
    """
    xml = (
        STREAM + "<presence from='a@example.test/r' xml:lang='en'><show>away</show>"
        "<status xml:lang='de'>Weg &amp; da</status><p:x xmlns:p='urn:p' p:a='1' b='2'><y/></p:x>"
        "<c xmlns='http://jabber.org/protocol/caps' ver='v'/></presence><message><body>hi\n&lt;there&gt;\n</body>"
        "</message><iq><a xmlns='urn:x'><b xmlns=''><c/></b><p:d xmlns:p='urn:p' xmlns=''/></a></iq>"
    )
    ours = parse(NamespaceSafeElementStream(), xml)
    theirs = parse(domish.ExpatElementStream(), xml)
    assert [describe(e) for e in ours] == [describe(e) for e in theirs]
    assert len(ours) == 3


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


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="only reference counting frees an object as soon as nothing holds it")
def test_parentsAreKnownWithoutCycles():
    """
    Each received element knows its parent, but a stanza is no reference
    cycle: it is freed as soon as nothing holds it, with the cyclic garbage
    collector off.
    """
    stream = NamespaceSafeElementStream()
    held = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = lambda stanza: held.append((weakref.ref(stanza), stanza.show.parent is stanza))
    gc.disable()
    try:
        stream.parse((STREAM + "<presence><show>away</show><x><y/></x></presence>").encode())
        [(stanza, parentKnown)] = held
        assert parentKnown
        assert stanza() is None
    finally:
        gc.enable()


def test_nestedElementsEndInPlace():
    """
    Elements close back to their own parent, so that siblings after a
    nested element are children of the right element, and the next stanza
    starts afresh.
    """
    [first, second] = parse(NamespaceSafeElementStream(),
                            STREAM + "<presence><a><b><c/></b>t</a><d/></presence><iq><e/></iq>")
    assert [c.name for c in first.elements()] == ["a", "d"]
    assert first.a.children[1] == "t"
    assert first.a.b.c.parent.parent.parent.name == "presence"
    assert [c.name for c in second.elements()] == ["e"]


def test_undeclaredDefaultNamespaceWritesBack():
    """
    An element that undeclares the default namespace (C{xmlns=''}), which a
    sender may put in any stanza, is written back by domish as well-formed
    XML, as when handlers copy received children into an error answer.
    """
    [iq] = parse(NamespaceSafeElementStream(),
                 STREAM + "<iq><query xmlns='jabber:iq:roster'><item xmlns='' jid='a@b'/></query></iq>")
    written = iq.query.toXml()
    pyexpat.ParserCreate(namespace_separator=" ").Parse(written, True)
    assert "xmlns=''" in written
