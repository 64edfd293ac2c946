"""
The HTTP connections presenced keeps: at most so many in all and from one
client address, and none held open by a client that sends nothing, or
sends a request too slowly to finish it.

Connections beyond a cap are closed as soon as they are accepted.  The
addresses of trusted reverse proxies are not capped one by one: all their
clients come through them.  Event streams are answers being written, which
no timeout cuts.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from twisted.internet.protocol import Protocol
from twisted.web import http

from presenced.ratelimit import Limits


class ConnectionCaps:
    """
    Counts the open HTTP connections, in all and by client address, and
    says whether one more may open.

    @ivar maxConnections: the most connections open at once.
    @ivar maxPerClient: the most from one address (trusted proxies apart).
    @ivar trusted: the networks of trusted reverse proxies.
    """

    def __init__(self, limits: Limits, maxConnections: int = 20_000, maxPerClient: int = 256,
                 trusted: tuple[IPv4Network | IPv6Network, ...] = ()) -> None:
        self.limits = limits
        self.maxConnections = maxConnections
        self.maxPerClient = maxPerClient
        self.trusted = trusted
        self.open = 0
        self._byClient: dict[str, int] = {}

    def admit(self, host: str | None) -> bool:
        """
        Count a new connection from C{host} and say yes, or say no (and
        count nothing) when it would go over a cap.
        """
        if self.open >= self.maxConnections:
            self.limits.hit("max_connections", "Closing new HTTP connections: {max} are open",
                            max=self.maxConnections)
            return False
        counted = host is not None and not self._isTrusted(host)
        if counted and self._byClient.get(host, 0) >= self.maxPerClient:
            self.limits.hit("max_connections_per_client",
                            "Closing new HTTP connections from a client with {max} open",
                            max=self.maxPerClient)
            return False
        self.open += 1
        if counted:
            self._byClient[host] = self._byClient.get(host, 0) + 1
        return True

    def release(self, host: str | None) -> None:
        """
        A connection that L{admit} counted closed.
        """
        self.open -= 1
        count = self._byClient.get(host)
        if count is not None:
            if count > 1:
                self._byClient[host] = count - 1
            else:
                del self._byClient[host]

    def _isTrusted(self, host: str) -> bool:
        if not self.trusted:
            return False
        try:
            return within(ip_address(host), self.trusted)
        except ValueError:
            return False


def within(ip: IPv4Address | IPv6Address, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    """
    Whether C{ip} is on one of C{networks}; an IPv4-mapped IPv6 address
    (an IPv4 client of a dual-stack listener) counts as its IPv4 address.
    """
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


class Refused(Protocol):
    """
    A connection over a cap: closed at once, unread.
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()


class GuardedChannel(http.HTTPChannel):
    """
    An HTTP connection that its site's L{ConnectionCaps} counts, and whose
    every request must arrive whole within C{timeOut} seconds of its first
    byte; an idle one is closed after as long (twisted.web's own idle
    timeout, which it suspends while an answer is written).

    @ivar host: the client address the caps count it against.
    @ivar counted: whether the caps counted it (and are told when it
        closes).
    """

    host: str | None = None
    counted = False
    _arriving = None
    _partial = False

    def dataReceived(self, data: bytes) -> None:
        # A request that arrives whole in one read, as most do, costs no
        # timer: the deadline is set only for one still incomplete after it.
        self._partial = True
        super().dataReceived(data)
        if self._partial and self._arriving is None and self.timeOut and not self._handlingRequest:
            self._arriving = self.callLater(self.timeOut, self._tooSlow)

    def allContentReceived(self) -> None:
        self._partial = False
        self._stopArriving()
        super().allContentReceived()

    def _tooSlow(self) -> None:
        self._arriving = None
        self.timeoutConnection()

    def timeoutConnection(self) -> None:
        """
        Close the connection, idle or with a request not received whole
        in time; the latter is counted, whichever timer came first.
        """
        if self._partial and not self._handlingRequest:
            self._partial = False
            self.site.limits.hit("request_timeout", "Closing HTTP connections whose request did not arrive "
                                                    "within {timeout} s", timeout=self.timeOut)
        self._stopArriving()
        super().timeoutConnection()

    def _stopArriving(self) -> None:
        if self._arriving is not None:
            if self._arriving.active():
                self._arriving.cancel()
            self._arriving = None

    def connectionLost(self, reason) -> None:
        self._stopArriving()
        if self.counted:
            self.counted = False
            self.site.connections.release(self.host)
        super().connectionLost(reason)
