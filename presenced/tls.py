"""
TLS for the HTTP listeners: options read from an C{ssl:} endpoint
description's files, renewable while the port stays open.
"""

from __future__ import annotations

from OpenSSL.SSL import Connection
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IOpenSSLContextFactory, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory
from zope.interface import implementer


def isTLS(description: str) -> bool:
    """
    Whether an endpoint description listens with TLS.
    """
    return description.split(":", 1)[0] in ("ssl", "tls")


def readTLSOptions(description: str) -> IOpenSSLContextFactory:
    """
    The TLS options of a TLS endpoint description, read from its
    certificate and key files now.

    @raise Exception: a file cannot be read or parsed, or the key is not
        the certificate's.
    """
    noted = _NotedListenSSL()
    serverFromString(noted, description).listen(Factory())
    noted.contextFactory.getContext()
    return noted.contextFactory


@implementer(IOpenSSLServerConnectionCreator)
class RenewableTLS:
    """
    The TLS options of one listening port, replaceable while it listens:
    each connection gets the options in force when it is accepted.

    @ivar options: the options in force, an L{IOpenSSLContextFactory}.
    """

    def __init__(self) -> None:
        self.options: IOpenSSLContextFactory | None = None

    def listeningWith(self, reactor) -> _ListenSSLWith:
        """
        The reactor for a TLS endpoint to listen with: the real one, which
        gets this object in place of the options the endpoint read.
        """
        return _ListenSSLWith(reactor, self)

    def serverConnectionForTLS(self, tlsProtocol) -> Connection:
        if IOpenSSLServerConnectionCreator.providedBy(self.options):
            return self.options.serverConnectionForTLS(tlsProtocol)
        return Connection(self.options.getContext(), None)


class _ListenSSLWith:
    """
    Stands in for the reactor to a TLS endpoint: it listens on C{reactor}
    with C{tls} in place of the endpoint's options, which C{tls} takes.
    """

    def __init__(self, reactor, tls: RenewableTLS) -> None:
        self._reactor = reactor
        self._tls = tls

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        contextFactory.getContext()
        self._tls.options = contextFactory
        return self._reactor.listenSSL(port, factory, self._tls, backlog, interface)


class _NotedListenSSL:
    """
    Stands in for the reactor to a TLS endpoint: it notes the options the
    endpoint would listen with, and does not listen.
    """

    contextFactory: IOpenSSLContextFactory

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        self.contextFactory = contextFactory
