"""
Tests for L{presenced.wokkel_compat}: wokkel's flaws, and their fixes,
side by side with wokkel's own behaviour.
"""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID

from presenced.wokkel_compat import ReplyCheckingStreamManager
from wokkel.generic import Request
from wokkel.subprotocols import StreamManager


def ping(managerClass, recipient: str | None) -> tuple[list, xmlstream.XmlStream, str]:
    """
    Send a request through a stream manager of C{managerClass} on a live
    stream; return what its deferred fires with, the stream, and the id.
    """
    factory = xmlstream.XmlStreamFactory(xmlstream.Authenticator())
    manager = managerClass(factory, task.Clock())
    xs = factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    xs.thisEntity = JID("bot@example.test/web")
    xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
    xs.dataReceived(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    results: list = []
    manager.request(Request(recipient=JID(recipient) if recipient else None, stanzaType="get")).addBoth(results.append)
    sent = xs.transport.value().decode()
    return results, xs, sent.split("id='")[1].split("'")[0]


def answer(xs: xmlstream.XmlStream, stanzaID: str, sender: str | None) -> None:
    sender = f" from='{sender}'" if sender else ""
    xs.dataReceived(f"<iq type='result' id='{stanzaID}'{sender}/>".encode())


def test_wokkelTakesAnyReplyWithTheId():
    """
    wokkel's own stream manager takes a reply from anyone, by its id alone:
    the flaw that L{ReplyCheckingStreamManager} fixes.
    """
    results, xs, stanzaID = ping(StreamManager, "alice@example.test/desk")
    answer(xs, stanzaID, "mallory@example.test/x")
    assert len(results) == 1


@pytest.mark.parametrize("recipient,sender,taken", [
    ("alice@example.test/desk", "mallory@example.test/x", False),
    ("alice@example.test/desk", "alice@example.test", False),
    ("alice@example.test/desk", None, False),
    ("alice@example.test/desk", "alice@example.test/desk", True),
    ("alice@example.test", "alice@example.test", True),
    (None, None, True),
    (None, "bot@example.test", True),
    (None, "example.test", False),
    ("bot@example.test", None, True),
])
def test_replyTakenOnlyFromTheRecipient(recipient, sender, taken):
    """
    A reply is taken only from the address the request went to, a missing
    C{to} or C{from} standing for the account's bare JID.
    """
    results, xs, stanzaID = ping(ReplyCheckingStreamManager, recipient)
    answer(xs, stanzaID, sender)
    assert (len(results) == 1) is taken
