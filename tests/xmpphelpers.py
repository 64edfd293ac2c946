"""
The component link that the XMPP-side tests drive: every handler of
presenced on a link over an in-memory transport.
"""

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from presenced.access import ServedScope
from presenced.avatars import VCardReader
from presenced.config import ComponentSettings
from presenced.presence import PresenceTracker
from presenced.component import ComponentConnection, PrivilegeListener, RosterReader
from presenced.feed import PresenceFeed
from presenced.link import LinkMonitor
DOMAIN = "example.test"
COMPONENT = "presence.example.test"


class Link:
    """
    A component link over an in-memory transport, with every handler of
    presenced attached, after a successful handshake.
    """

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.connection = ComponentConnection(self.clock, ComponentSettings(COMPONENT, "secret", "127.0.0.1", 5347, DOMAIN))
        self.monitor = LinkMonitor(self.clock)
        self.monitor.setHandlerParent(self.connection)
        self.feed = PresenceFeed(self.tracker, ServedScope(frozenset({DOMAIN})), self.clock)
        self.feed.setHandlerParent(self.connection)
        self.privileges = PrivilegeListener(DOMAIN, self.clock)
        self.privileges.setHandlerParent(self.connection)
        self.rosters = RosterReader(self.monitor, timeout=5)
        self.rosters.setHandlerParent(self.connection)
        self.vcards = VCardReader(self.monitor, timeout=5)
        self.vcards.setHandlerParent(self.connection)
        self.connect()

    def connect(self) -> None:
        self.xs = self.connection.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.xs.makeConnection(self.transport)
        self.receive(
            f"<stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' from='{COMPONENT}' id='s1'>"
        )
        self.receive("<handshake/>")
        self.transport.clear()

    def receive(self, xml: str) -> None:
        self.xs.dataReceived(xml.encode("utf-8"))

    def sent(self) -> str:
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data

    def drop(self) -> None:
        self.xs.connectionLost(Failure(Exception("gone")))
