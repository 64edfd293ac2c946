"""
The HTTP listeners: one per endpoint description of C{[http] listen},
changed on reload without a moment with nothing listening, and the
certificates of C{ssl:} ones renewed on the open port.
"""

from __future__ import annotations

from typing import Callable

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet.interfaces import IAddress, IListeningPort, IOpenSSLContextFactory
from twisted.logger import Logger
from twisted.web.server import Site

from presenced.config import ReloadRefused, Settings
from presenced.tls import RenewableTLS, isTLS, readTLSOptions


class Listeners(MultiService):
    """
    The listening ports of the HTTP site, named C{http} in the service tree.

    @ivar listen: the endpoint descriptions listened on, in order.
    @ivar stoppedListening: called with the address of each port that a
        reconfig stopped listening on, once it has (the connections that
        came through it are still open).
    """

    log = Logger()

    def __init__(self, site: Site, reactor, listen: tuple[str, ...]) -> None:
        super().__init__()
        self.setName("http")
        self.site = site
        self.reactor = reactor
        self._listeners = {}
        self._tls: dict[str, RenewableTLS] = {}
        self.stoppedListening: list[Callable[[IAddress], None]] = []
        for description in listen:
            self._add(description)

    @property
    def listen(self) -> tuple[str, ...]:
        return tuple(self._listeners)

    def _add(self, description: str) -> None:
        if isTLS(description):
            tls = self._tls[description] = RenewableTLS()
            listener = strports.service(description, self.site, reactor=tls.listeningWith(self.reactor))
        else:
            listener = strports.service(description, self.site, reactor=self.reactor)
        self._listeners[description] = listener
        listener.setServiceParent(self)

    async def _remove(self, description: str) -> None:
        self._tls.pop(description, None)
        listener = self._listeners.pop(description)
        address = _listeningAddress(listener)
        await listener.disownServiceParent()
        if address is not None:
            for observer in self.stoppedListening:
                observer(address)

    def readCertificates(self, settings: Settings) -> dict[str, IOpenSSLContextFactory]:
        """
        The certificates, read again now, of the TLS listeners that
        C{settings} keeps.

        @raise ReloadRefused: one cannot be read, or is not its key's.
        """
        try:
            return {d: readTLSOptions(d) for d in self._tls if d in settings.http.listen}
        except Exception as e:
            raise ReloadRefused(f"cannot read a TLS certificate ({e})") from None

    async def reconfig(self, settings: Settings, certificates: dict[str, IOpenSSLContextFactory]) -> None:
        """
        Listen on the endpoints of C{settings}, new ones first, then stop
        listening on those it drops; then serve C{certificates} (from
        L{readCertificates}) on the kept TLS ports.

        @raise ReloadRefused: a new endpoint cannot listen; the others new
            ones are closed again, and the old ones kept.
        """
        listen = settings.http.listen
        added = [d for d in listen if d not in self._listeners]
        try:
            for description in added:
                self._add(description)
        except Exception as e:
            for description in added:
                if description in self._listeners:
                    await self._remove(description)
            raise ReloadRefused(f"cannot listen ({e})") from None
        for description in [d for d in self._listeners if d not in listen]:
            await self._remove(description)
        for description, options in certificates.items():
            self._tls[description].options = options
            self.log.info("Certificate of {description} read again", description=description)


def _listeningAddress(listener) -> IAddress | None:
    """
    The address that C{listener} (a twisted.application.strports service)
    listens on, or C{None} when it does not (yet, or any more).
    """
    waiting = getattr(listener, "_waitingForPort", None)
    ports: list[IListeningPort] = []
    if waiting is not None:
        waiting.addCallback(lambda port: ports.append(port) or port)
    getHost = getattr(ports[0], "getHost", None) if ports else None
    return None if getHost is None else getHost()
