"""
The daemon's service tree: the XMPP link feeding the presence model, and
the HTTP listeners serving it.
"""

from __future__ import annotations

from twisted.application import strports
from twisted.application.service import MultiService

from presenced.access import AccessPolicy, RosterCache
from presenced.answers import AnswerRenderer, loadImages
from presenced.config import Settings
from presenced.presence import PresenceTracker
from presenced.web import StatusResource, buildSite
from presenced.xmpp import ComponentConnection, LinkMonitor, PresenceFeed, PrivilegeListener, RosterReader


class PresenceService(MultiService):
    """
    presenced as one service: XMPP → presence model → HTTP.

    Its children are named C{xmpp} (the component link) and C{http} (the
    listeners).

    @ivar tracker: the presence model.
    @ivar link: whether the XMPP link is up.
    @ivar site: the HTTP site.
    """

    def __init__(self, settings: Settings, reactor) -> None:
        super().__init__()
        self.settings = settings
        self.tracker = PresenceTracker()

        xmpp = settings.xmpp
        connection = ComponentConnection(reactor, xmpp.host, xmpp.port, xmpp.jid, xmpp.secret)
        connection.setName("xmpp")
        connection.setServiceParent(self)
        self.link = LinkMonitor(reactor)
        self.link.setHandlerParent(connection)
        PresenceFeed(self.tracker, xmpp.domain, reactor).setHandlerParent(connection)
        PrivilegeListener(xmpp.domain).setHandlerParent(connection)
        reader = RosterReader(self.link, settings.presence.roster_timeout)
        reader.setHandlerParent(connection)

        rosters = RosterCache(reader.subscribers, reactor, settings.presence.roster_ttl)
        self.link.listeners.append(lambda connected: connected or rosters.clear())
        policy = AccessPolicy(settings.presence.public, rosters)
        renderer = AnswerRenderer(loadImages(settings.http.images), settings.presence.labels)
        self.site = buildSite(StatusResource(self.tracker, policy, renderer, xmpp.domain))

        http = MultiService()
        http.setName("http")
        http.setServiceParent(self)
        for description in settings.http.listen:
            strports.service(description, self.site, reactor=reactor).setServiceParent(http)
