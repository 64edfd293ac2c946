"""
The XMPP side: the link to the server, the presence feed into the model,
and the privileged component's handlers.

The link (L{LinkService}, L{LinkStreamFactory}) is shared by both modes.
As a component (XEP-0114), presenced gets its users' presence forwarded
under the privileges of XEP-0356 and may read their rosters; client mode
is in L{presenced.xmppclient}.
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Callable, Iterator

from presenced.wokkel_compat import ReplyCheckingStreamManager  # (must precede wokkel)

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber import component as jabber_component
from twisted.words.protocols.jabber import error as jabber_error
from twisted.words.protocols.jabber import sasl
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import InvalidFormat, JID
from twisted.words.xish import domish
from wokkel.component import Component
from wokkel.subprotocols import XMPPHandler
from wokkel.generic import Request
from wokkel.xmppim import RosterItem, RosterRequest

from presenced.config import XMPPSettings
from presenced.presence import PresenceTracker, ResourcePresence, stateFromShow
from presenced.ratelimit import RateLimitedLog
from presenced.streamparser import LinkXmlStream

NS_COMPONENT = "jabber:component:accept"
NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_PRIVILEGE = ("urn:xmpp:privilege:2", "urn:xmpp:privilege:1")
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_PING = "urn:xmpp:ping"

#: Longest status text kept; longer ones are cut.
MAX_STATUS = 1024


def _serverStampedSender(text: str | None, domains: frozenset[str]) -> tuple[str, str | None] | None:
    """
    Split the C{from} of a presence the server forwards into the user's
    bare JID and resource, if it is a user of one of C{domains}.

    The server stamps C{from} with the sender's normalised JID (RFC 6120,
    8.1.2.1), so it is compared as it is, without redoing stringprep; a
    sender that is not exactly C{user@domain[/resource]} is not a user of
    a served domain.
    """
    if not text:
        return None
    bare, slash, resource = text.partition("/")
    user, at, host = bare.partition("@")
    if not at or not user or host not in domains or len(bare) > 2048 or len(resource) > 1023:
        return None
    if slash and not resource:
        return None
    return bare, resource or None


def _standalone(stanza: domish.Element) -> bytes:
    """
    Serialise a received stanza on its own, as UTF-8, as a client sees it,
    with its namespace left implicit: the stanza's elements, wherever they
    are, are written in no namespace, as the stanza itself is.  Elements
    the sender put in no namespace, which RFC 6120 does not allow, are
    left out, so that they cannot pass for the stanza's own.

    Unlike domish's serializer, which writes namespace names as they are,
    every value is escaped (whitespace in attributes too, so that it reads
    back the same), so a hostile stanza cannot change the structure of the
    XML answer; and the tree is walked without recursion, however deep.
    Elements are written in the default namespace form; the prefixes an
    element declared are declared again (the stanza's namespace as
    C{jabber:client}), and namespaced attributes get prefixes of their own
    where they have none (C{xml:} stays).
    """
    own = stanza.uri
    out: list[str] = []
    # Per open element: its children still to write, its end tag, and the
    # namespace it puts in scope.
    unfinished: list[tuple[Iterator, str, str]] = [(iter((stanza,)), "", "")]
    while unfinished:
        children, end, inScope = unfinished[-1]
        for child in children:
            if isinstance(child, str):
                out.append(_escapeText(child))
                continue
            uri = child.uri
            if not uri and own:
                continue
            uri = inScope if uri is None else "" if uri == own else uri
            name = child.name
            out.append("<" + name if uri == inScope else f"<{name} xmlns='{_escapeAttribute(uri)}'")
            declared = None
            if child.localPrefixes:
                declared = {}
                for prefix, namespace in child.localPrefixes.items():
                    declared[prefix] = namespace = NS_CLIENT if namespace == own else namespace
                    out.append(f" xmlns:{prefix}='{_escapeAttribute(namespace)}'")
            for attribute, value in child.attributes.items():
                if attribute.__class__ is tuple:
                    if declared is None:
                        declared = {}
                    attribute = _prefixed(attribute, own, declared, out)
                out.append(f" {attribute}='{_escapeAttribute(value)}'")
            content = child.children
            if not content:
                out.append("/>")
            elif len(content) == 1 and content[0].__class__ is str:
                out.append(f">{_escapeText(content[0])}</{name}>")
            else:
                out.append(">")
                unfinished.append((iter(content), f"</{name}>", uri))
                break
        else:
            unfinished.pop()
            out.append(end)
    return "".join(out).encode("utf-8")


_TEXT_SPECIALS = re.compile("[&<>\r]")
_ATTRIBUTE_SPECIALS = re.compile("[&<>\r'\"\t\n]")


def _escapeText(text: str) -> str:
    if not _TEXT_SPECIALS.search(text):
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _escapeAttribute(value: str) -> str:
    if not _ATTRIBUTE_SPECIALS.search(value):
        return value
    return (_escapeText(value).replace("'", "&apos;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;"))


def _prefixed(name: tuple[str, str], own: str, declared: dict[str, str], out: list[str]) -> str:
    """
    The prefixed name of a namespaced attribute: with the prefix that
    C{declared} (prefix to namespace, on this element) has for its
    namespace, or a new one, declared in C{out} and added to C{declared}.
    The stanza's own namespace C{own} is written as C{jabber:client}.
    """
    namespace, local = name
    if namespace == NS_XML:
        return "xml:" + local
    if namespace == own:
        namespace = NS_CLIENT
    for prefix, known in declared.items():
        if known == namespace:
            return prefix + ":" + local
    prefix = next(p for p in (f"ns{n}" for n in itertools.count()) if p not in declared)
    declared[prefix] = namespace
    out.append(f" xmlns:{prefix}='{_escapeAttribute(namespace)}'")
    return f"{prefix}:{local}"


def _presenceFields(element: domish.Element) -> tuple[str | None, str | None, int]:
    """
    The C{<show/>}, status text and priority of a presence, read in one
    pass over its children.

    The status text is the one without C{xml:lang}, else the first one,
    cut to L{MAX_STATUS}; an unparseable priority is 0, and priorities are
    held to -128..127.
    """
    show = priority = plainStatus = firstStatus = None
    hasPlainStatus = False
    for child in element.children:
        if not isinstance(child, domish.Element) or child.uri != element.uri:
            continue
        name = child.name
        if name == "status":
            if (NS_XML, "lang") not in child.attributes:
                if not hasPlainStatus:
                    hasPlainStatus, plainStatus = True, str(child)
            elif firstStatus is None:
                firstStatus = str(child)
        elif name == "show":
            if show is None:
                show = str(child)
        elif name == "priority" and priority is None:
            priority = str(child)
    status = (plainStatus if hasPlainStatus else firstStatus or "").strip()[:MAX_STATUS] or None
    return show, status, _priority(priority)


def _priority(text: str | None) -> int:
    try:
        value = int(text.strip()) if text is not None else 0
    except ValueError:
        return 0
    return max(-128, min(127, value))


class PresenceFeed(XMPPHandler):
    """
    Feeds every presence of the served domains' users into the model, or
    of those users that C{tracks} accepts.

    Presence from other domains, from the bare domain, with an unparseable
    sender, or of types other than available and unavailable is ignored.
    When the link is lost, the model is cleared: presence is no longer
    known.

    @ivar tracks: whether to track a user (a normalised bare JID) of a
        served domain; C{None} tracks all of them.
    """

    def __init__(self, tracker: PresenceTracker, domains: frozenset[str], clock: IReactorTime,
                 tracks: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.domains = domains
        self.clock = clock
        self.tracks = tracks

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self.onPresence)

    def connectionLost(self, reason) -> None:
        self.tracker.clear()

    def onPresence(self, element: domish.Element) -> None:
        """
        Record one presence stanza.
        """
        sender = _serverStampedSender(element.getAttribute("from"), self.domains)
        if sender is None:
            return
        user, resource = sender
        if self.tracks is not None and not self.tracks(user):
            return
        kind = element.getAttribute("type")
        if kind == "unavailable":
            self.tracker.unavailable(user, resource, _presenceFields(element)[1])
        elif kind is None and resource is not None:
            self.tracker.available(user, self._resourcePresence(element, resource))

    def _resourcePresence(self, element: domish.Element, resource: str) -> ResourcePresence:
        element.attributes.pop("to", None)
        show, status, priority = _presenceFields(element)
        return ResourcePresence(
            resource=resource,
            state=stateFromShow(show),
            status=status,
            priority=priority,
            received=self.clock.seconds(),
            stanza=_standalone(element),
        )


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
            self.tracker.unavailable(user, resource, None)


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


class LinkMonitor(XMPPHandler):
    """
    Knows whether the link to the server is up, and tells listeners when
    that changes.

    @ivar connected: whether the stream is authenticated.
    @ivar since: when C{connected} last changed (reactor seconds), or
        C{None} before the first change.
    @ivar listeners: callables called with the new value of C{connected}.
    """

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self.connected = False
        self.since: float | None = None
        self.listeners: list[Callable[[bool], None]] = []

    def connectionInitialized(self) -> None:
        self._change(True)

    def connectionLost(self, reason) -> None:
        self._change(False)

    def _change(self, connected: bool) -> None:
        self.connected = connected
        self.since = self.clock.seconds()
        for listener in list(self.listeners):
            listener(connected)


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
    found = set()
    for query in iq.elements(NS_ROSTER, "query"):
        for child in query.elements(NS_ROSTER, "item"):
            try:
                item = RosterItem.fromElement(child)
            except (InvalidFormat, KeyError, ValueError):
                continue
            if item.subscriptionFrom and item.entity is not None:
                found.add(item.entity.userhost())
    return frozenset(found)


def _rosterFailure(failure) -> None:
    if failure.check(jabber_error.StanzaError):
        raise RosterUnavailable(f"the server answered {failure.value.condition}")
    if failure.check(xmlstream.TimeoutError):
        raise RosterUnavailable("no answer in time")
    if failure.check(RosterUnavailable):
        failure.raiseException()
    raise RosterUnavailable(repr(failure.value))


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
    how to connect (L{_connect}).

    @ivar authenticated: whether the link is up and authenticated.
    """

    log = Logger()

    def __init__(self, reactor, settings: XMPPSettings) -> None:
        ReplyCheckingStreamManager.__init__(self, LinkStreamFactory(self.authenticatorFor(settings), reactor), reactor)
        self.settings = settings
        self.authenticated = False
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

    def reconnect(self, settings: XMPPSettings) -> defer.Deferred[None]:
        """
        Drop the current link, and connect again with new settings once it
        is closed.

        @return: fires when the new connection attempt has started.
        """
        closed: defer.Deferred[None] = defer.Deferred()
        if self.xmlstream is not None:
            self.xmlstream.addOnetimeObserver(xmlstream.STREAM_END_EVENT, lambda _: closed.callback(None))
        else:
            closed.callback(None)
        self.factory.stopTrying()
        if self._connector is not None:
            self._connector.disconnect()
        self.settings = settings
        self.factory.setAuthenticator(self.authenticatorFor(settings))

        def connectAgain(_):
            self.factory.resetDelay()
            self._connector = self._connect()

        return closed.addCallback(connectAgain)

    def _authd(self, xs) -> None:
        self.authenticated = True
        account = getattr(xs.authenticator, "jid", None) or xs.thisEntity
        self.log.info("Connected to the XMPP server as {jid}", jid=account.full())
        super()._authd(xs)

    def _disconnected(self, reason) -> None:
        if self.authenticated:
            self.log.warn("Lost the link to the XMPP server; presence is unknown until it is back")
        self.authenticated = False
        super()._disconnected(reason)

    def initializationFailed(self, reason) -> None:
        """
        Failed stream set-ups are logged and retried by the factory.
        """


class ComponentConnection(LinkService, Component):
    """
    The external component's link (XEP-0114); outgoing stanzas are sent
    from the component's address.
    """

    @staticmethod
    def authenticatorFor(settings: XMPPSettings) -> xmlstream.ConnectAuthenticator:
        return jabber_component.ConnectComponentAuthenticator(settings.jid, settings.secret)
