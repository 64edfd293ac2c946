"""
Tests for L{presenced.link}: whether the link is up, reconnecting, and
the stream set-up's timeouts and logs.
"""

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import error, xmlstream
from twisted.words.protocols.jabber.component import ConnectComponentAuthenticator

from presenced.link import LinkStreamFactory

from xmpphelpers import COMPONENT, Link


@pytest.fixture
def link():
    return Link()


def test_linkMonitor(link):
    """
    The link monitor knows when the stream is up and tells listeners.
    """
    changes = []
    link.monitor.listeners.append(changes.append)
    assert link.monitor.connected is True
    link.clock.advance(7)
    link.drop()
    assert (changes, link.monitor.since) == ([False], 7)


class FakeConnector:
    """
    A connector that counts the connection attempts asked of it.
    """

    def __init__(self):
        self.attempts = 0

    def connect(self):
        self.attempts += 1

    def stopConnecting(self):
        pass


def timeToReconnect(clock: task.Clock, connector: FakeConnector) -> float:
    """
    Run C{clock}'s delayed calls in order until one asks C{connector} to
    connect; the time that took.
    """
    start, attempts = clock.seconds(), connector.attempts
    while connector.attempts == attempts:
        clock.advance(min(call.getTime() for call in clock.getDelayedCalls()) - clock.seconds())
    return clock.seconds() - start


def connectionFails(factory: LinkStreamFactory, connector: FakeConnector, authenticated: bool = False) -> None:
    """
    A TCP connection that factory's stream gets, optionally authenticates
    on, then loses.
    """
    xs = factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    if authenticated:
        xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
    reason = Failure(Exception("closed"))
    with capturedLogs():
        xs.connectionLost(reason)
        factory.clientConnectionLost(connector, reason)


def test_retryDelayGrowsUntilAuthenticated():
    """
    Reconnect delays grow while handshakes fail, even though TCP connects,
    are capped at a minute, and start over after a successful handshake.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    factory.jitter = 0
    connector = FakeConnector()
    delays = []
    for attempt in range(12):
        connectionFails(factory, connector)
        delays.append(timeToReconnect(clock, connector))
    assert all(later >= earlier - 1e-9 for earlier, later in zip(delays, delays[1:]))
    assert delays[0] == pytest.approx(1.0)
    assert delays[1] > delays[0]
    assert delays[-1] == pytest.approx(60)
    connectionFails(factory, connector, authenticated=True)
    assert timeToReconnect(clock, connector) == pytest.approx(1.0)


def test_rejectedSecretLogged():
    """
    A stream error not-authorized is logged as a rejected secret.
    """
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), task.Clock())
    xs = factory.buildProtocol(None)
    xs.makeConnection(StringTransport())
    with capturedLogs() as events:
        xs.dispatch(Failure(error.StreamError("not-authorized")), xmlstream.STREAM_ERROR_EVENT)
    assert [e["log_format"] for e in events if e["log_level"] == LogLevel.error] == [
        "The XMPP server rejected the credentials of {jid}"
    ]


def test_handshakeTimeout():
    """
    A server that never completes the handshake is disconnected after the
    handshake timeout.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    xs = factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    clock.advance(29)
    assert not transport.disconnecting
    with capturedLogs():
        clock.advance(2)
    assert transport.disconnecting


def test_handshakeTimerCancelledOnSuccess():
    """
    A completed handshake cancels the timeout: the connection stays open.
    """
    clock = task.Clock()
    factory = LinkStreamFactory(ConnectComponentAuthenticator(COMPONENT, "secret"), clock)
    xs = factory.buildProtocol(None)
    transport = StringTransport()
    xs.makeConnection(transport)
    xs.dispatch(xs, xmlstream.STREAM_AUTHD_EVENT)
    clock.advance(factory.handshakeTimeout + 1)
    assert not transport.disconnecting
