"""
The link to the XMPP server, shared by both modes: the stream factory that
connects and reconnects it, the service that keeps it up, and the one
place that knows whether it is up.

As a component (XEP-0114) see L{presenced.component}; as an ordinary
account, L{presenced.client}.
"""

from __future__ import annotations

import random
from typing import Callable

from presenced.wokkel_compat import ReplyCheckingStreamManager  # (must precede wokkel)

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.protocols.jabber import sasl
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from presenced.config import XMPPSettings
from presenced.ratelimit import Limits
from presenced.streamparser import LinkXmlStream


class LinkMonitor(XMPPHandler):
    """
    Knows whether the link to the server is up, the one place that does,
    and tells listeners when that changes.

    @ivar connected: whether the stream is authenticated.
    @ivar since: when C{connected} last changed (reactor seconds), or
        C{None} before the first change.
    @ivar listeners: callables called with the new value of C{connected}.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self.connected = False
        self.since: float | None = None
        self.listeners: list[Callable[[bool], None]] = []

    def connectionInitialized(self) -> None:
        self._change(True)

    def connectionLost(self, reason) -> None:
        if self.connected:
            self.log.warn("Lost the link to the XMPP server; presence is unknown until it is back")
        self._change(False)

    def _change(self, connected: bool) -> None:
        self.connected = connected
        self.since = self.clock.seconds()
        for listener in list(self.listeners):
            listener(connected)


class LinkStreamFactory(xmlstream.XmlStreamFactory):
    """
    Connects an XML stream to the server and reconnects it when the link
    fails: for the component's handshake (XEP-0114) or a client login.

    Unlike twisted.words' own factories, the retry delay is reset only once
    the stream is authenticated, so that rejected credentials are retried
    with growing delays, and it is capped at L{maxDelay} (a minute) rather
    than an hour.  Delays grow exponentially, with jitter.  Each stream set-up
    must finish within L{handshakeTimeout} seconds; a failed one is closed.
    """

    log = Logger()
    noisy = False
    protocol = LinkXmlStream
    limits: Limits | None = None
    initialDelay = 1.0
    maxDelay = 60.0
    handshakeTimeout = 30.0

    def __init__(self, authenticator: xmlstream.ConnectAuthenticator, clock: IReactorTime) -> None:
        super().__init__(authenticator)
        self.clock = clock
        self.delay = self.initialDelay
        self.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, self._watchSetUp)
        self.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)

    def setAuthenticator(self, authenticator: xmlstream.ConnectAuthenticator) -> None:
        """
        Use other credentials from the next connection on.
        """
        self.authenticator = authenticator
        self.args = (authenticator,)

    def buildProtocol(self, addr):
        delay, retries = self.delay, self.retries
        xs = super().buildProtocol(addr)
        self.delay, self.retries = delay, retries
        xs.limits = self.limits
        return xs

    def _watchSetUp(self, xs: xmlstream.XmlStream) -> None:
        """
        Watch one connection until its stream is set up: time it out, and
        log once why it failed.
        """
        timer = self.clock.callLater(self.handshakeTimeout, self._handshakeTimedOut, xs)
        explained = []

        def authenticated(_):
            timer.cancel()
            xs.removeObserver(xmlstream.STREAM_END_EVENT, ended)

        def explain(reason, otherwise: str) -> None:
            explained.append(reason)
            rejected = reason.check(sasl.SASLAuthError) or (
                reason.check(jabber_error.StreamError) and reason.value.condition == "not-authorized")
            if rejected:
                self.log.error("The XMPP server rejected the credentials of {jid}", jid=self.account())
            else:
                self.log.error(otherwise, why=reason.getErrorMessage())

        def streamError(reason):
            if reason.check(domish.ParserError):
                explain(reason, "The XMPP server sent XML that cannot be parsed ({why}); reconnecting")
            else:
                explain(reason, "The XMPP server closed the stream: {why}")

        def setUpFailed(reason):
            explain(reason, "Setting up the XMPP stream failed: {why}")
            xs.transport.loseConnection()

        def ended(reason):
            if timer.active():
                timer.cancel()
            if not explained:
                self.log.error("The connection closed before the XMPP stream was set up: {why}",
                               why=reason.getErrorMessage())

        xs.addOnetimeObserver(xmlstream.STREAM_AUTHD_EVENT, authenticated)
        xs.addOnetimeObserver(xmlstream.STREAM_ERROR_EVENT, streamError)
        xs.addOnetimeObserver(xmlstream.INIT_FAILED_EVENT, setUpFailed)
        xs.addOnetimeObserver(xmlstream.STREAM_END_EVENT, ended)

    def _handshakeTimedOut(self, xs: xmlstream.XmlStream) -> None:
        self.log.error("The XMPP stream was not set up within {timeout}s; closing the connection",
                       timeout=self.handshakeTimeout)
        xs.transport.abortConnection()

    def _authenticated(self, xs: xmlstream.XmlStream) -> None:
        self.resetDelay()
        self.delay = self.initialDelay

    def account(self) -> str:
        """
        The address presenced logs in with.
        """
        jid = getattr(self.authenticator, "jid", None)
        return jid.full() if jid is not None else self.authenticator.otherHost

    def retry(self, connector=None) -> None:
        """
        Connect again after the current delay (with jitter), then grow the
        delay.  Twisted releases differ in when they grow it; this is the
        one schedule presenced follows whichever it runs on.
        """
        if not self.continueTrying:
            return
        connector = connector or self.connector
        self.retries += 1
        if self.jitter:
            self.delay = max(0.0, random.normalvariate(self.delay, self.delay * self.jitter))
        self._callID = self.clock.callLater(self.delay, self._reconnect, connector)
        self.log.info("Reconnecting to the XMPP server in {delay:.1f}s (attempt {attempt})",
                      delay=self.delay, attempt=self.retries)
        self.delay = min(self.delay * self.factor, self.maxDelay)

    def _reconnect(self, connector) -> None:
        self._callID = None
        connector.connect()


class LinkService(ReplyCheckingStreamManager, service.Service):
    """
    A link to the XMPP server, kept up for the lifetime of the service and
    reconnected by its L{LinkStreamFactory}.

    Subclasses say how to authenticate (L{authenticatorFor}) and may say
    how to connect (L{_connect}).  Whether the link is up is known to the
    L{LinkMonitor} among its handlers.
    """

    log = Logger()

    def __init__(self, reactor, settings: XMPPSettings) -> None:
        ReplyCheckingStreamManager.__init__(self, LinkStreamFactory(self.authenticatorFor(settings), reactor), reactor)
        self.settings = settings
        self._connector = None

    @staticmethod
    def authenticatorFor(settings: XMPPSettings) -> xmlstream.ConnectAuthenticator:
        """
        The authenticator that logs in with C{settings}.
        """
        raise NotImplementedError()

    def startService(self) -> None:
        """
        Start connecting, and keep reconnecting until stopped.
        """
        service.Service.startService(self)
        self._connector = self._connect()

    def stopService(self) -> None:
        """
        Close the link and stop reconnecting.
        """
        service.Service.stopService(self)
        self.factory.stopTrying()
        if self._connector is not None:
            self._connector.disconnect()

    def _connect(self):
        return self._reactor.connectTCP(self.settings.host, self.settings.port, self.factory,
                                        timeout=self.factory.handshakeTimeout)

    def reconnect(self, settings: XMPPSettings,
                  authenticator: xmlstream.ConnectAuthenticator | None = None) -> defer.Deferred[None]:
        """
        Drop the current link, and connect again with new settings once it
        is closed.

        @param authenticator: the one L{authenticatorFor} gives for
            C{settings}, if already made.
        @return: fires when the new connection attempt has started.
        """
        if authenticator is None:
            authenticator = self.authenticatorFor(settings)
        closed: defer.Deferred[None] = defer.Deferred()
        if self.xmlstream is not None:
            self.xmlstream.addOnetimeObserver(xmlstream.STREAM_END_EVENT, lambda _: closed.callback(None))
        else:
            closed.callback(None)
        self.factory.stopTrying()
        if self._connector is not None:
            self._connector.disconnect()
        self.settings = settings
        self.factory.setAuthenticator(authenticator)

        def connectAgain(_):
            self.factory.resetDelay()
            self._connector = self._connect()

        return closed.addCallback(connectAgain)

    def _authd(self, xs) -> None:
        account = getattr(xs.authenticator, "jid", None) or xs.thisEntity
        self.log.info("Connected to the XMPP server as {jid}", jid=account.full())
        super()._authd(xs)

    def initializationFailed(self, reason) -> None:
        """
        Failed stream set-ups are logged and retried by the factory.
        """
