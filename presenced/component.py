"""
Component mode: presenced as a privileged external component (XEP-0114,
XEP-0356).  The server forwards its users' presence; rosters are read for
subscribers-only answers; online resources are checked now and then.
"""

from __future__ import annotations

from presenced.wokkel_compat import rosterItems  # (must precede wokkel)

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.component import Component
from wokkel.generic import Request
from wokkel.subprotocols import XMPPHandler
from wokkel.xmppim import RosterRequest

from presenced.access import AccessPolicy, RosterCache, ServedScope
from presenced.config import ComponentSettings, Settings
from presenced.link import LinkMonitor, LinkService
from presenced.presence import PresenceTracker
from presenced.ratelimit import Limits
from presenced.ratelimit import RateLimitedLog

NS_ROSTER = "jabber:iq:roster"
NS_PRIVILEGE = ("urn:xmpp:privilege:2", "urn:xmpp:privilege:1")
NS_PING = "urn:xmpp:ping"


class _PingRequest(Request):
    stanzaType = "get"

    def toElement(self) -> domish.Element:
        element = super().toElement()
        element.addElement((NS_PING, "ping"))
        return element


def _stampedJID(user: str, resource: str) -> JID:
    """
    The JID of C{user}'s C{resource} as the server stamped it.

    Built without redoing stringprep, which the server did already and
    which costs more than all the rest of a ping (L{JID} preps even the
    parts it is given as a tuple).
    """
    jid = JID.__new__(JID)
    jid.user, _, jid.host = user.partition("@")
    jid.resource = resource
    return jid


class ResourceChecker(XMPPHandler):
    """
    Every C{interval} seconds, pings each online resource (XEP-0199) and
    takes offline those the server says are gone.

    Some servers (ejabberd) forward no unavailable presence to the
    component when a client drops without sending one; this keeps such
    users from being shown online for ever.  A resource is taken as gone
    when the answer is an error that servers give for a session that no
    longer exists; any other answer, or none, leaves it as it is.

    A round of pings is spread over L{spread} of the interval, in batches
    of at most L{batchSize}, so that many online users never hold the
    reactor (and every HTTP answer) for long.

    @cvar batchSize: the most pings sent in one reactor turn.
    @cvar spread: the share of the interval that a round lasts at most.
    """

    log = Logger()

    #: The error conditions that mean there is no such session.
    GONE = frozenset({"service-unavailable", "recipient-unavailable", "item-not-found"})

    batchSize = 50
    spread = 0.5

    def __init__(self, tracker: PresenceTracker, clock: IReactorTime, interval: float, timeout: float) -> None:
        super().__init__()
        self.tracker = tracker
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.gone = RateLimitedLog(self.log, clock)
        self._loop: task.LoopingCall | None = None
        self._nextBatch: IDelayedCall | None = None

    def connectionInitialized(self) -> None:
        self._start()

    def connectionLost(self, reason) -> None:
        self._stop()

    def setInterval(self, interval: float) -> None:
        """
        Check every C{interval} seconds from now on (0: never); a round
        under way is stopped.
        """
        self.interval = interval
        if self._loop is not None:
            self._stop()
            self._start()

    def _start(self) -> None:
        if self.interval > 0:
            self._loop = task.LoopingCall(self.check)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False)

    def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._stopRound()

    def _stopRound(self) -> None:
        if self._nextBatch is not None and self._nextBatch.active():
            self._nextBatch.cancel()
        self._nextBatch = None

    def check(self) -> None:
        """
        Start a round: ping every resource online now, the first
        L{batchSize} at once and the others in batches as large, evenly
        spaced over L{spread} of the interval; resources gone offline
        before their turn are skipped.  A round under way is stopped.
        """
        self._stopRound()
        resources = self.tracker.onlineResources()
        batches = -(-len(resources) // self.batchSize)
        pause = self.interval * self.spread / batches if batches else 0.0
        self._pingBatch(resources, 0, self.clock.seconds(), pause)

    def _pingBatch(self, resources: list[tuple[str, str]], batch: int, began: float, pause: float) -> None:
        self._nextBatch = None
        end = (batch + 1) * self.batchSize
        for user, resource in resources[end - self.batchSize:end]:
            if self.tracker.isOnline(user, resource):
                request = _PingRequest(recipient=_stampedJID(user, resource))
                request.timeout = self.timeout
                self.request(request).addErrback(self._answered, user, resource)
        if end < len(resources):
            delay = max(0.0, began + (batch + 1) * pause - self.clock.seconds())
            self._nextBatch = self.clock.callLater(delay, self._pingBatch, resources, batch + 1, began, pause)

    def _answered(self, failure, user: str, resource: str) -> None:
        if failure.check(jabber_error.StanzaError) and failure.value.condition in self.GONE:
            self.gone.info("{user}/{resource} is gone; showing it offline", user=user, resource=resource)
            self.tracker.unavailable(user, resource, None, self.clock.seconds())


class PrivilegeListener(XMPPHandler):
    """
    Takes note of the XEP-0356 privileges the server grants.

    Logs what was granted, and warns when the presence or roster permission
    that presenced needs is missing.  Advertisements from anyone but the
    server are ignored, with a warning at most once a minute.

    @ivar granted: permission access name to type, as last advertised.
    """

    log = Logger()

    def __init__(self, serverDomain: str, clock: IReactorTime) -> None:
        super().__init__()
        self.serverDomain = serverDomain
        self.granted: dict[str, str] = {}
        self.impostors = RateLimitedLog(self.log, clock)

    def connectionInitialized(self) -> None:
        self.granted = {}
        self.xmlstream.addObserver("/message/privilege", self.onPrivilege)

    def onPrivilege(self, element: domish.Element) -> None:
        """
        Read a privilege advertisement sent by the server.
        """
        privilege = element.privilege
        if privilege.uri not in NS_PRIVILEGE:
            return
        if element.getAttribute("from") != self.serverDomain:
            self.impostors.warn(
                "Ignoring a privilege advertisement from {sender!r}, not the server {server}",
                sender=element.getAttribute("from"),
                server=self.serverDomain,
            )
            return
        granted = {}
        for perm in privilege.elements(privilege.uri, "perm"):
            access, kind = perm.getAttribute("access"), perm.getAttribute("type")
            if access and kind:
                granted[access] = kind
        self.granted = granted
        self.log.info(
            "The server grants privileges ({namespace}): {permissions}",
            namespace=privilege.uri,
            permissions=", ".join(f"{a}={t}" for a, t in sorted(granted.items())) or "none",
        )
        if granted.get("presence") not in ("roster", "managed_entity"):
            self.log.warn(
                "No presence permission: presenced will not see users' presence. "
                "Grant presence = \"roster\" (or \"managed_entity\") to this component."
            )
        if granted.get("roster") not in ("get", "both"):
            self.log.warn(
                "No roster permission: subscribers-only requests will all be forbidden. "
                "Grant roster = \"get\" to this component."
            )


class RosterUnavailable(Exception):
    """
    A user's roster could not be read.
    """


class RosterReader(XMPPHandler):
    """
    Reads users' rosters with a privileged roster get (XEP-0356).
    """

    def __init__(self, link: LinkMonitor, timeout: float) -> None:
        super().__init__()
        self.link = link
        self.timeout = timeout

    def subscribers(self, user: str) -> defer.Deferred[frozenset[str]]:
        """
        The bare JIDs that receive C{user}'s presence: roster items with
        subscription C{from} or C{both}.

        @raise RosterUnavailable: (errback) when there is no link, the server
            answers with an error, or the answer does not come in time.
        """
        if not self.link.connected:
            return defer.fail(RosterUnavailable("no XMPP link"))
        request = RosterRequest(recipient=JID(user), stanzaType="get")
        request.timeout = self.timeout
        d = self.request(request)
        d.addCallbacks(_subscribersFromRoster, _rosterFailure)
        return d


def _subscribersFromRoster(iq: domish.Element) -> frozenset[str]:
    return frozenset(item.entity.userhost()
                     for query in iq.elements(NS_ROSTER, "query")
                     for item in rosterItems(query) if item.subscriptionFrom)


def _rosterFailure(failure) -> None:
    if failure.check(jabber_error.StanzaError):
        raise RosterUnavailable(f"the server answered {failure.value.condition}")
    if failure.check(xmlstream.TimeoutError):
        raise RosterUnavailable("no answer in time")
    raise RosterUnavailable(repr(failure.value))


class ComponentConnection(LinkService, Component):
    """
    The external component's link (XEP-0114); outgoing stanzas are sent
    from the component's address.
    """

    @staticmethod
    def authenticatorFor(settings: ComponentSettings) -> xmlstream.ConnectAuthenticator:
        return jabber_component.ConnectComponentAuthenticator(settings.jid, settings.secret)


class ComponentMode:
    """
    The XMPP side as a privileged component (XEP-0114, XEP-0356): the
    server forwards presence; rosters are read for subscribers-only
    answers; online resources are checked now and then.

    @ivar handlers: what the link needs besides the presence feed.
    @ivar policy: who may see whom.
    @ivar tracks: whose presence the feed tracks: every user of the domain.
    """

    tracks = None

    def __init__(self, settings: Settings, reactor, tracker: PresenceTracker, link: LinkMonitor,
                 scope: ServedScope, limits: Limits | None = None) -> None:
        xmpp, presence = settings.xmpp, settings.presence
        self.connection = ComponentConnection(reactor, xmpp)
        self.privileges = PrivilegeListener(xmpp.domain, reactor)
        self.rosterReader = RosterReader(link, presence.roster_timeout)
        self.checker = ResourceChecker(tracker, reactor, xmpp.resource_check, presence.roster_timeout)
        self.handlers = [self.privileges, self.rosterReader, self.checker]
        self.rosters = RosterCache(self.rosterReader.subscribers, reactor, presence.roster_ttl,
                                   presence.roster_reads_in_flight, limits)
        link.listeners.append(lambda connected: connected or self.rosters.clear())
        self.policy = AccessPolicy(presence.public, self.rosters, presence.roster_reads_per_client)

    def reconfig(self, settings: Settings) -> None:
        """
        Use new settings from now on (a changed link is reconnected apart).
        """
        self.policy.public = settings.presence.public
        self.rosters.ttl = settings.presence.roster_ttl
        self.rosters.maxInFlight = settings.presence.roster_reads_in_flight
        self.policy.readsPerClient.allowance = settings.presence.roster_reads_per_client
        self.rosters.clear()
        self.rosterReader.timeout = settings.presence.roster_timeout
        self.privileges.serverDomain = settings.xmpp.domain
        self.checker.setInterval(settings.xmpp.resource_check)
