"""
Tests for L{presenced.streamparser}: the XML parser of presenced's streams.
"""

import gc
import platform
import pyexpat
import weakref

import pytest
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish

from presenced.streamparser import LinkXmlStream, NamespaceSafeElementStream

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


def skipping(**limits) -> tuple[NamespaceSafeElementStream, list[str]]:
    """
    A stream with the given limits, and the reasons of the stanzas it skips.
    """
    stream = NamespaceSafeElementStream()
    for name, value in limits.items():
        setattr(stream, name, value)
    skipped: list[str] = []
    stream.StanzaSkippedEvent = skipped.append
    return stream, skipped


@pytest.mark.parametrize("limit,within,over,reason", [
    ({"maxElementCount": 3}, "<presence><a/><b/></presence>", "<presence><a/><b/><c/></presence>", "more than 3 elements"),
    ({"maxDepth": 3}, "<presence><a><b/></a></presence>", "<presence><a><b><c/></b></a></presence>",
     "more than 3 levels of elements"),
    ({"maxStanzaSize": 100}, f"<presence><status>{'x' * 60}</status></presence>",
     f"<presence><status>{'x' * 100}</status></presence>", "more than 100 bytes"),
    ({"maxStanzaSize": 100}, "<presence>" + "<a/>" * 15 + "</presence>", "<presence>" + "<a/>" * 30 + "</presence>",
     "more than 100 bytes"),
])
def test_oversizedStanzaSkipped(limit, within, over, reason):
    """
    A stanza over a limit (elements, depth or bytes) is skipped and its
    reason given; the stanzas before and after it, within the limits, are
    parsed.
    """
    stream, skipped = skipping(**limit)
    elements = parse(stream, STREAM + within + over + "<iq><after/></iq>")
    assert [e.name for e in elements] == ["presence", "iq"]
    assert elements[1].firstChildElement().name == "after"
    assert skipped == [reason]


def test_parsingResumesInTheRightNamespaces():
    """
    After a stanza skipped anywhere inside, amid namespace declarations,
    the next stanza is parsed exactly as it would be on its own.
    """
    stream, skipped = skipping(maxElementCount=5)
    after = "<presence><x xmlns='urn:x'><y/></x><p:z xmlns:p='urn:p'/><status>s</status></presence>"
    elements = parse(stream, STREAM + "<presence xmlns='urn:outer'><a xmlns='urn:a' xmlns:q='urn:q'>"
                     "<b xmlns=''><q:c xmlns='urn:c'><d/><e/><f xmlns:r='urn:r'/></q:c></b></a></presence>" + after)
    [alone] = parse(NamespaceSafeElementStream(), STREAM + after)
    assert [describe(e) for e in elements] == [describe(alone)]
    assert len(skipped) == 1


def peakWhileParsing(stream: NamespaceSafeElementStream, chunk: bytes, times: int) -> int:
    """
    The most memory allocated while C{stream} parses C{chunk} C{times}
    times; skips the test where the interpreter cannot trace memory.
    """
    pytest.importorskip("_tracemalloc", reason="this Python cannot trace its memory")
    import tracemalloc

    tracemalloc.start()
    try:
        for _ in range(times):
            stream.parse(chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_skippedStanzaIsNotBuilt():
    """
    Skipping a stanza keeps nothing of it: however much of it follows
    after it went over, memory stays bounded.
    """
    stream, skipped = skipping(maxElementCount=10)
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = lambda element: None
    stream.parse((STREAM + "<presence>").encode())
    peak = peakWhileParsing(stream, b"<a b='c'><d/></a>" * 4000, 50)
    stream.parse(b"</presence>")
    assert (skipped, peak < 1024 * 1024) == (["more than 10 elements"], True)


HUGE = "y" * 600


@pytest.mark.parametrize("stanza", [
    f"<presence><x a='{HUGE}'/></presence>",
    f"<presence a='{HUGE}'><x/></presence>",
    f"<presence a='{HUGE}'/>",
    f"<presence><x xmlns:p='urn:p' p:a='{HUGE}'><p:y/></x></presence>",
    f"<presence><x a=\"q'>/{HUGE}\" b='/'><![CDATA[</presence><a>]]><!-- </presence> --><?pi </presence>?>"
    "<y b='>'/></x></presence>",
    f"<presence><{'n' * 600}/></presence>",
])
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_hugeTagSkipped(stanza, chunk):
    """
    A stanza with a tag larger than the byte limit, which expat would have
    to hold whole, is passed over unparsed, however its bytes come in, and
    the next stanza is parsed exactly as it would be on its own.
    """
    stream, skipped = skipping(maxStanzaSize=200)
    after = "<presence><x xmlns='urn:x'><y/></x><p:z xmlns:p='urn:p'/><status>s</status></presence>"
    xml = (STREAM + "<iq/>" + stanza + after).encode()
    elements = []
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = elements.append
    step = chunk or len(xml)
    for start in range(0, len(xml), step):
        stream.parse(xml[start:start + step])
    [alone] = parse(NamespaceSafeElementStream(), STREAM + after)
    [iq] = parse(NamespaceSafeElementStream(), STREAM + "<iq/>")
    assert [describe(e) for e in elements] == [describe(iq), describe(alone)]
    assert len(skipped) == 1


def test_hugeTagNotKept():
    """
    However large a tag is, memory stays bounded while it is passed over.
    """
    stream, skipped = skipping()
    stream.DocumentStartEvent = lambda root: None
    received = []
    stream.ElementEvent = received.append
    stream.parse((STREAM + "<iq/><presence><x a='").encode())
    peak = peakWhileParsing(stream, b"y" * 65536, 320)
    stream.parse(b"'/></presence><message/>")
    assert [e.name for e in received] == ["iq", "message"]
    assert (len(skipped), peak < 8 * 1024 * 1024) == (1, True)


def test_hugeStreamStartIsAParseError():
    """
    A stream whose start tag is larger than the byte limit, before any
    stanza, is a parse error.
    """
    stream, _ = skipping(maxStanzaSize=100)
    with pytest.raises(domish.ParserError):
        parse(stream, "<stream:stream xmlns='jabber:client' a='" + "y" * 70000)


def test_streamCountsAndLogsSkippedStanzas():
    """
    The link's stream counts the stanzas it skips, logs the 1st, 10th and
    100th, and goes on dispatching the stanzas after them.
    """
    xs = LinkXmlStream(xmlstream.Authenticator())
    xs.makeConnection(StringTransport())
    xs.stream.maxElementCount = 2
    received = []
    xs.addObserver("/iq", received.append)
    xs.dataReceived(STREAM.encode())
    with capturedLogs() as events:
        xs.dataReceived(b"<presence><a/><b/></presence>" * 100 + b"<iq/>")
    assert (xs.skippedStanzas, len(received), xs.transport.disconnecting) == (100, 1, False)
    assert [e["count"] for e in events if e["log_level"] == LogLevel.warn] == [1, 10, 100]


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
