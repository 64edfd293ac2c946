"""
Live presence: Server-Sent Events streams (C{text/event-stream}) that
tell a page each change of what the users it follows show.

The unit of every event is the object of C{type=json}.  A stream gets one
event per user when it opens, then one each time that user's object
changes; a stream whose requester may no longer see a user (a
subscription lost, found when the cached roster is read again) gets the
forbidden object for that user, and nothing more about them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.web import resource, server

from presenced.access import RosterReadsSpent
from presenced.answers import Body, answerHeaders
from presenced.config import PresenceSettings, Settings
from presenced.presence import PresenceTracker, Shown, State
from presenced.ratelimit import Limits
from presenced.web import (BadRequest, BatchQuery, StatusResource, answerLater,
                           finishAnswer, methodNotAllowed, parseBatch)

#: What a user shows, as the bytes of its JSON object.
Render = Callable[[str, Shown], bytes]

#: The forbidden object of a user, as bytes.
Forbidden = Callable[[str], bytes]

#: Whether the asker of a stream (its query) may still see a user: at once
#: or later; never fails.
Decide = Callable[[str, object], Union[bool, defer.Deferred]]

#: How long a browser waits before reconnecting a lost stream, in ms.
RETRY_MS = 5000

#: Seconds a client refused for lack of room is asked to wait.
RETRY_AFTER = 30

SCRIPT = answerHeaders(b"application/javascript; charset=utf-8")

STREAM_HEADERS = (
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),
    (b"X-Content-Type-Options", b"nosniff"),
)


def recheckInterval(presence: PresenceSettings) -> float:
    """
    Seconds between rechecks of who may see whom on open streams: none
    when anyone may see anyone, else the roster TTL (a minute when rosters
    are not kept).
    """
    return 0.0 if presence.public else presence.roster_ttl or 60.0


class EventStream:
    """
    One open stream: the request it answers, and for each user it follows
    the last object it was sent, or C{None} once that user is refused.

    @ivar query: what the stream was asked with, for rechecks of access.
    @ivar client: the client address it counts against.
    """

    def __init__(self, request: server.Request, query: object, client: str) -> None:
        self.request = request
        self.query = query
        self.client = client
        self.sent: dict[str, bytes | None] = {}
        self._nextID = 1

    def event(self, user: str, data: bytes) -> None:
        """
        Send C{data} as the C{presence} event of C{user}, unless it is
        what the stream was last sent for them.
        """
        if self.sent.get(user, b"") == data:
            return
        self.sent[user] = data
        self.request.write(b"id: %d\nevent: presence\ndata: %s\n\n" % (self._nextID, data))
        self._nextID += 1

    def refuse(self, user: str, data: bytes) -> None:
        """
        Send the forbidden object for C{user}, and nothing about them
        from now on.
        """
        self.event(user, data)
        self.sent[user] = None

    def follows(self, user: str) -> bool:
        """
        Whether the stream is still told about C{user}.
        """
        return self.sent.get(user) is not None


class PresenceEvents(service.Service):
    """
    Every open event stream, told of changes by the presence model.

    @ivar keepalive: seconds between keep-alive comments.
    @ivar maxStreams: the most streams open at once.
    @ivar maxPerClient: the most streams open at once from one client.
    @ivar recheckEvery: seconds between rechecks of subscribers-only
        access (the roster cache's TTL); C{0}: none.
    """

    name = "events"

    def __init__(self, tracker: PresenceTracker, render: Render, forbidden: Forbidden, decide: Decide,
                 clock: IReactorTime, keepalive: float = 15.0, maxStreams: int = 10_000,
                 maxPerClient: int = 32, recheckEvery: float = 0.0, limits: Limits | None = None) -> None:
        self.tracker = tracker
        self.render = render
        self.forbidden = forbidden
        self.decide = decide
        self.clock = clock
        self.keepalive = keepalive
        self.maxStreams = maxStreams
        self.maxPerClient = maxPerClient
        self.recheckEvery = recheckEvery
        self.limits = Limits(clock) if limits is None else limits
        self._streams: set[EventStream] = set()
        self._byUser: dict[str, set[EventStream]] = {}
        self._byClient: dict[str, int] = {}
        self._keepalive: task.LoopingCall | None = None
        self._recheck: task.LoopingCall | None = None
        tracker.observers.append(self.changed)

    def room(self, client: str) -> bool:
        """
        Whether another stream may open for C{client}.
        """
        if len(self._streams) >= self.maxStreams:
            self.limits.hit("max_streams", "Refusing event streams: {max} are open", max=self.maxStreams)
            return False
        if self._byClient.get(client, 0) >= self.maxPerClient:
            self.limits.hit("max_streams_per_client", "Refusing event streams from a client with {max} open",
                            max=self.maxPerClient)
            return False
        return True

    def open(self, request: server.Request, access: dict[str, bool], query: object,
             client: str) -> EventStream:
        """
        Answer C{request} with a stream following the users of C{access},
        each told as allowed or refused, and keep it until the client
        goes or presenced stops.
        """
        for name, value in STREAM_HEADERS:
            request.setHeader(name, value)
        channel = getattr(request, "channel", None)
        if channel is not None:
            channel.setTimeout(None)
        stream = EventStream(request, query, client)
        request.write(b"retry: %d\n\n" % RETRY_MS)
        for user, allowed in access.items():
            if allowed:
                stream.event(user, self.render(user, self.tracker.shown(user)))
                self._byUser.setdefault(user, set()).add(stream)
            else:
                stream.refuse(user, self.forbidden(user))
        self._streams.add(stream)
        self._byClient[client] = self._byClient.get(client, 0) + 1
        request.notifyFinish().addBoth(lambda _: self._closed(stream))
        self._startTimers()
        return stream

    def changed(self, user: str, shown: Shown) -> None:
        """
        Tell the streams following C{user} what they show now.
        """
        streams = self._byUser.get(user)
        if not streams:
            return
        data = self.render(user, shown)
        for stream in list(streams):
            stream.event(user, data)

    def _closed(self, stream: EventStream) -> None:
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        count = self._byClient[stream.client] - 1
        if count:
            self._byClient[stream.client] = count
        else:
            del self._byClient[stream.client]
        for user in stream.sent:
            following = self._byUser.get(user)
            if following is not None:
                following.discard(stream)
                if not following:
                    del self._byUser[user]
        if not self._streams:
            self._stopTimers()

    def _startTimers(self) -> None:
        if self._keepalive is None and self.keepalive > 0:
            self._keepalive = task.LoopingCall(self._comment)
            self._keepalive.clock = self.clock
            self._keepalive.start(self.keepalive, now=False)
        if self._recheck is None and self.recheckEvery > 0:
            self._recheck = task.LoopingCall(self._recheckAccess)
            self._recheck.clock = self.clock
            self._recheck.start(self.recheckEvery, now=False)

    def _stopTimers(self) -> None:
        for loop in (self._keepalive, self._recheck):
            if loop is not None and loop.running:
                loop.stop()
        self._keepalive = self._recheck = None

    def _comment(self) -> None:
        for stream in list(self._streams):
            stream.request.write(b": keep-alive\n\n")

    def _recheckAccess(self) -> None:
        for stream in list(self._streams):
            for user in [user for user in stream.sent if stream.follows(user)]:
                decision = self.decide(user, stream.query)
                if isinstance(decision, bool):
                    self._rechecked(decision, stream, user)
                else:
                    decision.addCallback(self._rechecked, stream, user)

    def _rechecked(self, allowed: bool, stream: EventStream, user: str) -> None:
        if allowed or stream not in self._streams or not stream.follows(user):
            return
        stream.refuse(user, self.forbidden(user))
        following = self._byUser.get(user)
        if following is not None:
            following.discard(stream)

    def reconfig(self, keepalive: float, maxStreams: int, maxPerClient: int, recheckEvery: float) -> None:
        """
        Use new settings from now on; open streams stay open.
        """
        self.keepalive, self.maxStreams, self.maxPerClient = keepalive, maxStreams, maxPerClient
        self.recheckEvery = recheckEvery
        self._stopTimers()
        if self._streams:
            self._startTimers()

    def openCount(self) -> int:
        """
        How many streams are open.
        """
        return len(self._streams)

    def closeAll(self) -> None:
        """
        End every open stream cleanly.
        """
        for stream in list(self._streams):
            self._closed(stream)
            stream.request.finish()

    def closeArrivedAt(self, listening: IAddress) -> None:
        """
        End cleanly the streams whose connections came to C{listening},
        the address of a port no longer listened on.
        """
        for stream in list(self._streams):
            if _arrivedAt(stream.request.getHost(), listening):
                self._closed(stream)
                stream.request.finish()

    def stopService(self) -> None:
        self.closeAll()
        self._stopTimers()
        return super().stopService()


def _arrivedAt(local: IAddress, listening: IAddress) -> bool:
    """
    Whether a connection whose local address is C{local} came to the port
    listening on C{listening} (on all interfaces, or on that one).
    """
    if type(local) is not type(listening):
        return False
    if not hasattr(listening, "port"):
        return local == listening
    return local.port == listening.port and listening.host in ("0.0.0.0", "::", local.host)


class EventsResource(StatusResource):
    """
    C{/plugins/presence/events}: an event stream following the users of
    the query (given as C{statuses} takes them), each decided as
    C{status} decides it.

    @ivar events: the open streams.
    """

    allowedMethods = (b"GET", b"OPTIONS")
    answerTypes = ()

    def __init__(self, status: StatusResource, events: PresenceEvents) -> None:
        super().__init__(status.tracker, status.policy, status.renderer, status.scope, status.requesters)
        self.events = events

    def reconfig(self, settings: Settings, images: dict[State, Body]) -> None:
        """
        Answer, and keep streams, with new settings from now on.
        """
        super().reconfig(settings, images)
        http, presence = settings.http, settings.presence
        self.events.reconfig(http.stream_keepalive, http.max_streams, http.max_streams_per_client,
                             recheckInterval(presence))

    def render_GET(self, request: server.Request) -> bytes | int:
        try:
            query = parseBatch(request.args, self.scope.domains, self.requesters)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        client = self.clientOf(request)
        if not self.events.room(client):
            request.setHeader(b"Retry-After", b"%d" % RETRY_AFTER)
            return self._refuse(request, 503, "too many event streams are open; try again later")
        try:
            decisions = self.decideAll(query, client)
        except RosterReadsSpent as e:
            return self._tooMany(request, e)
        if isinstance(decisions, list):
            return self._open(request, query, decisions, client)
        return answerLater(request, decisions, lambda allowed: self._open(request, query, allowed, client))

    def _open(self, request: server.Request, query: BatchQuery, decisions: list[bool], client: str) -> int:
        self.delivery.allowOrigin(request)
        self.events.open(request, dict(zip(query.users, decisions)), query, client)
        return server.NOT_DONE_YET


class WidgetResource(resource.Resource):
    """
    C{/plugins/presence/widget.js}: the script that fills a page's
    C{data-presence-jid} elements and keeps them live; revalidated as
    every answer is.
    """

    isLeaf = True

    def __init__(self, status: StatusResource) -> None:
        super().__init__()
        self.status = status
        self.body = Body(SCRIPT, (Path(__file__).parent / "widget.js").read_bytes())

    def render(self, request: server.Request) -> bytes | int:
        """
        Answer GET and HEAD; any other method gets a plain 405.
        """
        if request.method not in (b"GET", b"HEAD"):
            return methodNotAllowed(request, (b"GET", b"HEAD"))
        return super().render(request)

    def render_GET(self, request: server.Request) -> int:
        return finishAnswer(request, self.status.delivery.send(request, self.body, None))

    render_HEAD = render_GET
