"""
Real XMPP clients for the sandbox: log in, set presence, manage
subscriptions.

They log in over plain TCP with presenced's own account authenticator
(SCRAM where offered, else PLAIN, which only a loopback server may get
without TLS); they are not meant for any other server.
"""

from __future__ import annotations

import presenced.wokkel_compat  # noqa: F401  (must precede wokkel)

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from wokkel.subprotocols import StreamManager
from wokkel.xmppim import PresenceClientProtocol, RosterClientProtocol

from presenced.client import AccountAuthenticator
from presenced.streamparser import LinkXmlStream


class _SubscriptionAutoApprover(PresenceClientProtocol):
    def subscribeReceived(self, entity: JID) -> None:
        if self.approve:
            self.subscribed(entity)

    approve = True


class SandboxClient:
    """
    One logged-in XMPP client session.

    @ivar jid: the full JID once connected.
    """

    def __init__(self, reactor, jid: str, password: str, port: int, host: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.jid = JID(jid)
        self.password = password
        self.host = host
        self.port = port
        self.factory = xmlstream.XmlStreamFactory(AccountAuthenticator(self.jid, password, tls="off", caFile=None))
        self.factory.protocol = LinkXmlStream  # also parses what hostile tests send
        self.manager = StreamManager(self.factory, reactor=reactor)
        self.manager.jid = self.jid  # wokkel checks roster pushes against it
        self.presence = _SubscriptionAutoApprover()
        self.presence.setHandlerParent(self.manager)
        self.roster = RosterClientProtocol()
        self.roster.setHandlerParent(self.manager)
        self._protocol = None
        self._ended: defer.Deferred = defer.Deferred()

    async def connect(self, timeout: float = 15.0) -> "SandboxClient":
        """
        Connect and log in; fires when the session is ready.
        """
        ready: defer.Deferred = defer.Deferred()
        self.factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, lambda xs: ready.called or ready.callback(xs))
        self.factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, lambda f: ready.called or ready.errback(f))
        ready.addTimeout(timeout, self.reactor)
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port)
        self._protocol = await endpoint.connect(self.factory)
        self._protocol.addOnetimeObserver(xmlstream.STREAM_END_EVENT, lambda _: self._ended.callback(None))
        xs = await ready
        self.jid = xs.authenticator.jid
        return self

    def available(self, show: str | None = None, status: str | None = None, priority: int = 0) -> None:
        """
        Send available presence.
        """
        self.presence.available(show=show, statuses={None: status} if status else None, priority=priority)

    def unavailable(self, status: str | None = None) -> None:
        """
        Send unavailable presence.
        """
        self.presence.unavailable(statuses={None: status} if status else None)

    def subscribe(self, contact: str) -> None:
        """
        Ask for C{contact}'s presence.
        """
        self.presence.subscribe(JID(contact))

    async def rosterItems(self) -> dict[str, object]:
        """
        The client's roster, by bare JID.
        """
        roster = await self.roster.getRoster()
        return {entity.userhost(): item for entity, item in roster.items()}

    @property
    def closed(self) -> bool:
        """
        Whether the stream has ended, by either side.
        """
        return self._ended.called

    async def disconnect(self) -> None:
        """
        Close the stream, if it is open, and wait until it is closed.
        """
        if self._protocol is None or self._ended.called:
            return
        ended: defer.Deferred = defer.Deferred()
        self._ended.addCallback(lambda _: ended.callback(None))
        self._protocol.transport.loseConnection()
        await ended

    def drop(self) -> None:
        """
        Cut the TCP connection without closing the stream, as a crash would.
        """
        self._protocol.transport.abortConnection()
