"""
The HTTP side: the Openfire-compatible presence API, and more.

C{/plugins/presence/status} answers with an image, text, XML, JSON or a
badge for one user, or redirects to a custom image;
C{/plugins/presence/statuses} with JSON for many.  Requests are validated
first; bad ones get a 400 with a short reason and nothing else happens.
Answers that are refused look the same whatever the reason.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Callable, Mapping, NamedTuple, Protocol
from urllib.parse import unquote_to_bytes

import hyperlink
from twisted.internet import address, defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web import http, pages, resource, server

from presenced import __version__, jids
from presenced.access import RosterReadsSpent, ServedScope, ViewPolicy
from presenced.config import Settings
from presenced.connections import ConnectionCaps, GuardedChannel, Refused, within
from presenced.answers import (JSON, MAX_BADGE_TEXT, NO_CACHE, NOT_IN_XML, TEXT, AnswerRenderer, Body, avatarBody,
                               defaultAvatar)
from presenced.avatars import AvatarCache
from presenced.delivery import METHODS, Delivery
from presenced.presence import PresenceTracker, Shown, State
from presenced.ratelimit import Limits
from presenced.sign import UNPROVEN, RequesterCheck

if TYPE_CHECKING:
    from presenced.metrics import MetricsResource

IMAGE_TOKEN = "--IMAGE--"
MAX_JID = 3071
MAX_URL = 2048
MAX_BODY = 64 * 1024
#: Enough for a batch of L{MAX_BATCH} users and the other parameters.
MAX_PARAMETERS = 128
#: The most users one C{statuses} request may ask about.
MAX_BATCH = 100
MAX_PROOF = 256
SERVER = b"presenced"

FORBIDDEN = Shown(State.FORBIDDEN)

#: The answers C{type} may ask for.
KINDS = ("image", "text", "xml", "json", "svg", "shields", "avatar")
#: The answers that show the user's JID, or its local part.
_SHOWS_USER = frozenset({"xml", "json", "svg", "shields"})
_BADGES = frozenset({"svg", "shields"})


class BadRequest(Exception):
    """
    A request parameter is missing or wrong; the message says which.
    """


class StatusQuery(NamedTuple):
    """
    A validated request to C{/plugins/presence/status}.

    @ivar user: the user asked about, a normalised bare JID (on a domain
        that is not served, with the local part as written unless the
        answer shows it: XML, JSON and badges).
    @ivar requester: who asks, a normalised bare JID, if given and it
        could matter: see L{parseQuery}.
    @ivar namesRequester: whether the request names a requester.
    @ivar kind: one of L{KINDS}.
    @ivar redirects: state to the URL of its custom image.
    @ivar expires: C{req_exp}, until when the requester's signature holds.
    @ivar signature: C{req_sig}, the signature vouching for the requester.
    @ivar label: a badge's C{label}, if given.
    @ivar showStatus: whether a badge shows the user's status
        (C{message=status}) rather than the state's label.
    """

    user: str
    requester: str | None = None
    kind: str = "image"
    redirects: Mapping[State, str] = MappingProxyType({})
    expires: str | None = None
    signature: str | None = None
    namesRequester: bool = False
    label: str | None = None
    showStatus: bool = False


class BatchQuery(NamedTuple):
    """
    A validated request to C{/plugins/presence/statuses}.

    @ivar users: the users asked about, normalised bare JIDs, each once,
        in the order first asked.
    @ivar requester: who asks, as in L{StatusQuery}.
    @ivar expires: C{req_exp}, as in L{StatusQuery}.
    @ivar signature: C{req_sig}, as in L{StatusQuery}.
    @ivar namesRequester: whether the request names a requester.
    """

    users: tuple[str, ...]
    requester: str | None = None
    expires: str | None = None
    signature: str | None = None
    namesRequester: bool = False


@lru_cache(maxsize=8192)
def _bareJID(text: str, localOn: frozenset[str] | None) -> tuple[str, bool] | None:
    """
    The bare JID in C{text} (see L{jids.parseBare}) and whether it names a
    user, or C{None} if C{text} is not a JID.  Cached: stringprep is costly.
    """
    try:
        parsed = jids.parseBare(text, localOn)
    except jids.InvalidJID:
        return None
    return parsed.bare, parsed.local is not None


def _single(args: dict[bytes, list[bytes]], name: bytes, limit: int) -> str | None:
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{name.decode()} is given more than once")
    return _decoded(name.decode(), values[0], limit)


def _decoded(name: str, raw: bytes, limit: int) -> str:
    if len(raw) > limit:
        raise BadRequest(f"{name} is too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{name} is not valid UTF-8") from None


def _jid(name: str, text: str, needsUser: bool, localOn: frozenset[str] | None = None) -> str:
    parsed = _bareJID(text, localOn)
    if parsed is None:
        raise BadRequest(f"{name} is not a valid JID")
    bare, hasUser = parsed
    if needsUser and not hasUser:
        raise BadRequest(f"{name} must name a user (user@domain)")
    return bare


def hostAllowed(host: str, patterns: tuple[str, ...]) -> bool:
    """
    Whether C{host} (as in a URI: IDNA-encoded) is one of C{patterns}:
    host names, or C{*.suffix} for any host under C{suffix}.
    """
    host = host.lower().rstrip(".")
    return any(host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern
               for pattern in patterns)


def _imageURL(name: str, text: str, template: bool, allowedHosts: tuple[str, ...]) -> str:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise BadRequest(f"{name} must not contain spaces or control characters")
    if "\\" in text:
        raise BadRequest(f"{name} must not contain backslashes")
    if template and IMAGE_TOKEN not in text:
        raise BadRequest(f"{name} must contain {IMAGE_TOKEN}")
    try:
        url = hyperlink.parse(text).to_uri()
        uri = url.to_text()
    except Exception:
        raise BadRequest(f"{name} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequest(f"{name} must be an absolute http or https URL")
    if url.userinfo:
        raise BadRequest(f"{name} must not contain a user name or password")
    if allowedHosts and not hostAllowed(url.host, allowedHosts):
        raise BadRequest(f"{name} points to a host that is not allowed")
    return uri


_STATE_PARAMETERS = {state.value.encode(): state for state in State}
_REDIRECT_PARAMETERS = frozenset({b"images", *_STATE_PARAMETERS})


def parseQuery(args: dict[bytes, list[bytes]], domains: frozenset[str] | None = None,
               redirectHosts: tuple[str, ...] = (), requesters: RequesterCheck | None = None) -> StatusQuery:
    """
    Validate the parameters of a status request.

    Stringprep is costly, so parts whose value cannot change the answer
    are not prepared: the local part of a user on a domain that is not
    served, unless the answer shows it (XML, JSON and badges); and
    C{req_jid} when the answer is refused whoever it is (the user is on
    such a domain, or C{requesters} say the request proves no requester),
    unless the answer is XML, which shows it.

    @param domains: the served domains; C{None}: any.
    @param redirectHosts: the hosts image URLs may point to (see
        L{hostAllowed}); empty: any.
    @param requesters: what proves a requester; C{None}: believe any.
    @raise BadRequest: naming the first parameter that is wrong.
    """
    userText = _single(args, b"jid", MAX_JID)
    if not userText:
        raise BadRequest("jid is required")
    kind = _single(args, b"type", 16) or "image"
    if kind not in KINDS:
        raise BadRequest("type must be image, text, xml, json, svg, shields or avatar")
    user = _jid("jid", userText, needsUser=True, localOn=None if kind in _SHOWS_USER else domains)
    requester, expires, signature, named = _requesterClaim(
        args, kind == "xml", domains is None or user.partition("@")[2] in domains, requesters)
    label, showStatus = (_badgeLabel(args), _showsStatus(args)) if kind in _BADGES else (None, False)
    query = StatusQuery(user, requester, kind, expires=expires, signature=signature, namesRequester=named,
                        label=label, showStatus=showStatus)

    if args.keys().isdisjoint(_REDIRECT_PARAMETERS):
        return query
    redirects = {}
    template = _single(args, b"images", MAX_URL)
    if template is not None:
        uri = _imageURL("images", template, template=True, allowedHosts=redirectHosts)
        redirects = {state: uri.replace(IMAGE_TOKEN, state.value) for state in State}
    for name in args.keys() & _STATE_PARAMETERS.keys():
        state = _STATE_PARAMETERS[name]
        redirects[state] = _imageURL(state.value, _single(args, name, MAX_URL), template=False,
                                     allowedHosts=redirectHosts)
    return query._replace(redirects=redirects)


def parseBatch(args: dict[bytes, list[bytes]], domains: frozenset[str] | None = None,
               requesters: RequesterCheck | None = None) -> BatchQuery:
    """
    Validate the parameters of a C{statuses} request: one to L{MAX_BATCH}
    different users (after normalisation), and a requester as for
    L{parseQuery}, prepared when it could matter for one of them.

    @raise BadRequest: naming the first parameter that is wrong.
    """
    texts = args.get(b"jid")
    if not texts:
        raise BadRequest("jid is required")
    users = {}
    for position, raw in enumerate(texts, 1):
        name = "jid" if len(texts) == 1 else f"jid #{position}"
        users[_jid(name, _decoded(name, raw, MAX_JID), needsUser=True)] = None
    if len(users) > MAX_BATCH:
        raise BadRequest(f"more than {MAX_BATCH} different users")
    served = domains is None or any(user.partition("@")[2] in domains for user in users)
    requester, expires, signature, named = _requesterClaim(args, False, served, requesters)
    return BatchQuery(tuple(users), requester, expires, signature, named)


def _requesterClaim(args: dict[bytes, list[bytes]], shown: bool, served: bool,
                    requesters: RequesterCheck | None) -> tuple[str | None, str | None, str | None, bool]:
    """
    C{req_jid}, C{req_exp} and C{req_sig}, and whether a requester is named.
    C{req_jid} is prepared only when the answer shows it, or a user asked
    about is C{served} and C{requesters} say the request may prove one.
    """
    requesterText = _single(args, b"req_jid", MAX_JID)
    expires = _single(args, b"req_exp", MAX_PROOF)
    signature = _single(args, b"req_sig", MAX_PROOF)
    requester = None
    if requesterText and (shown or (served and (requesters is None or requesters.mayProve(expires, signature)))):
        requester = _jid("req_jid", requesterText, needsUser=False)
    return requester, expires, signature, bool(requesterText)


def _badgeLabel(args: dict[bytes, list[bytes]]) -> str | None:
    label = _single(args, b"label", 4 * MAX_BADGE_TEXT)
    if not label:
        return None
    if len(label) > MAX_BADGE_TEXT:
        raise BadRequest("label is too long")
    if any(c < " " for c in label) or NOT_IN_XML.search(label):
        raise BadRequest("label must not contain control characters")
    return label


def _showsStatus(args: dict[bytes, list[bytes]]) -> bool:
    message = _single(args, b"message", 16) or "state"
    if message not in ("state", "status"):
        raise BadRequest("message must be state or status")
    return message == "status"


class StatusResource(resource.Resource):
    """
    C{/plugins/presence/status}: one user's presence, as the Openfire
    Presence Service plugin answers it, and more.

    @ivar scope: the served domains.
    @ivar redirectHosts: the hosts image URLs may point to; empty: any.
    @ivar avatars: where users' pictures come from; C{None}: nobody's
        are shown, everyone gets the default one.
    @ivar delivery: the headers around every answer: CORS, validators,
        caching.
    @ivar clients: tells a request's client past trusted proxies; the
        site's.
    """

    isLeaf = True
    allowedMethods = METHODS
    answerTypes = KINDS
    redirectHosts: tuple[str, ...] = ()
    clients: ClientAddressFormatter

    def __init__(self, tracker: PresenceTracker, policy: ViewPolicy,
                 renderer: AnswerRenderer, scope: ServedScope, requesters: RequesterCheck,
                 avatars: AvatarCache | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.policy = policy
        self.renderer = renderer
        self.scope = scope
        self.requesters = requesters
        self.avatars = self._avatarSource = avatars
        self.delivery = Delivery()
        self.clients = ClientAddressFormatter()

    def reconfig(self, settings: Settings, images: dict[State, Body]) -> None:
        """
        Answer with new settings, and the icons they name, from now on.
        """
        self.renderer = AnswerRenderer(images, settings.presence.labels, settings.presence.last_seen)
        self.requesters = RequesterCheck.fromSettings(settings.presence, self.requesters.clock)
        self.redirectHosts = settings.http.redirect_hosts
        self.avatars = self._avatarSource if settings.presence.avatars else None
        self.delivery = Delivery.fromSettings(settings)

    def render_GET(self, request: server.Request) -> bytes | int:
        try:
            query = parseQuery(request.args, self.scope.domains, self.redirectHosts, self.requesters)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        try:
            decision = self.decide(query.user, query, self.rosterClient(request, query))
        except RosterReadsSpent as e:
            return self._tooMany(request, e)
        if isinstance(decision, bool):
            return self._answer(request, query, self.shown(query.user, decision))
        return answerLater(request, decision,
                            lambda allowed: self._answer(request, query, self.shown(query.user, allowed)))

    def clientOf(self, request: server.Request) -> str:
        """
        The address of C{request}'s client, past trusted proxies, as text;
        C{"unknown"} when it cannot be told.
        """
        address = self.clients.clientIP(request)
        return "unknown" if address is None else str(address)

    def rosterClient(self, request: server.Request, query: StatusQuery | BatchQuery) -> str | None:
        """
        The client that C{request}'s roster reads count against: L{clientOf},
        told only when the query names a requester (no roster is read
        otherwise), as that costs more than many an answer.
        """
        return None if query.requester is None else self.clientOf(request)

    def decide(self, user: str, query: StatusQuery | BatchQuery,
               client: str | None = None) -> bool | defer.Deferred[bool]:
        """
        Whether C{query}'s requester may see C{user}'s presence: C{user}
        is on a served domain, the request proves its requester (or names
        none), and the view policy says yes; at once, or later.

        @param client: the address of the HTTP client asking, counted
            against its roster reads; C{None}: not counted.
        @raise RosterReadsSpent: C{client} may cause no more roster reads
            for now.
        """
        if user.partition("@")[2] not in self.scope.domains:
            return False
        requester = self.requesters.proven(user, query.requester, query.expires, query.signature)
        if requester is UNPROVEN or (query.namesRequester and query.requester is None):
            return False
        return self.policy.mayView(user, requester, client)

    def decideAll(self, query: BatchQuery, client: str | None = None) -> list[bool] | defer.Deferred[list[bool]]:
        """
        L{decide} for each user of C{query}, in order: at once when all
        are known, else a Deferred of them all, the rosters they need read
        at the same time.

        @raise RosterReadsSpent: C{client} may cause no more roster reads
            for now.
        """
        decisions = [self.decide(user, query, client) for user in query.users]
        if all(isinstance(decision, bool) for decision in decisions):
            return decisions
        return defer.gatherResults([defer.succeed(decision) if isinstance(decision, bool) else decision
                                    for decision in decisions])

    def shown(self, user: str, allowed: bool) -> Shown:
        """
        What answers show of C{user}: what they show as far as it may be
        told (see L{AnswerRenderer.published}) when C{allowed}, else
        forbidden.
        """
        if not allowed:
            return FORBIDDEN
        shown = self.tracker.shown(user)
        return shown if self.renderer.lastSeen else self.renderer.published(shown)

    def render_HEAD(self, request: server.Request) -> bytes | int:
        """
        The headers of the GET answer, its length included, and no body.
        """
        body = self.render_GET(request)
        if body is server.NOT_DONE_YET:
            return body
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return b""

    def render_POST(self, request: server.Request) -> bytes | int:
        """
        A form-encoded POST is answered as the GET of its parameters.
        """
        return self.render_GET(request)

    def render_OPTIONS(self, request: server.Request) -> int:
        """
        A preflight, or any C{OPTIONS} request: see L{Delivery.preflight}.
        """
        return finishAnswer(request, self.delivery.preflight(request, self.allowedMethods))

    def render(self, request: server.Request) -> bytes | int:
        """
        Dispatch as L{resource.Resource} does; any other method gets a
        plain 405 naming the allowed ones.
        """
        if request.method in self.allowedMethods:
            return super().render(request)
        request.setHeader(b"Allow", b", ".join(self.allowedMethods))
        return self._refuse(request, 405, "only GET, HEAD, POST and OPTIONS are allowed")

    def _refuse(self, request: server.Request, code: int, reason: str) -> bytes:
        """
        A plain error answer saying C{reason}, readable by the pages that
        may read the answers.
        """
        self.delivery.allowOrigin(request)
        return _plain(request, code, reason)

    def _tooMany(self, request: server.Request, spent: RosterReadsSpent) -> bytes:
        """
        The answer to a client that caused too many roster reads: the same
        whichever users it asked for.
        """
        request.setHeader(b"Retry-After", b"%d" % spent.retryAfter)
        return self._refuse(request, 429, "too many subscribers-only requests from this address; "
                                          "try again later")

    def _answer(self, request: server.Request, query: StatusQuery, shown: Shown) -> int:
        """
        Answer C{request} with what C{shown} is, as C{query} asks, and
        finish it (once the picture is read, for an avatar not known yet).
        An avatar tells nothing of when presence changed: it has no
        C{Last-Modified}.
        """
        redirect = query.redirects.get(shown.state)
        if redirect is not None and query.kind != "avatar":
            request.setResponseCode(302)
            request.setHeader(b"Cache-Control", NO_CACHE)
            request.setHeader(b"Location", redirect.encode("ascii"))
            self.delivery.allowOrigin(request)
            return finishAnswer(request, b"")
        kind = query.kind
        if kind == "text":
            body = self.renderer.text(shown)
        elif kind == "xml":
            body = self.renderer.xml(shown, query.user, query.requester)
        elif kind == "image":
            body = self.renderer.image(shown)
        elif kind == "json":
            body = self.renderer.json(shown, query.user)
        elif kind == "svg":
            body = self.renderer.svg(shown, query.user, query.label, query.showStatus)
        elif kind == "shields":
            body = self.renderer.shields(shown, query.user, query.label, query.showStatus)
        else:
            picture = self._avatar(query.user, shown)
            if isinstance(picture, Deferred):
                return answerLater(request, picture, lambda found: self._deliver(request, found, None))
            return self._deliver(request, picture, None)
        return self._deliver(request, body, self.delivery.lastModified(shown))

    def _deliver(self, request: server.Request, body: Body, lastModified: float | None) -> int:
        return finishAnswer(request, self.delivery.send(request, body, lastModified))

    def _avatar(self, user: str, shown: Shown) -> Body | Deferred[Body]:
        """
        The user's picture, or the default one when they have none that
        may be shown, avatars are off, or the answer is refused.
        """
        if self.avatars is None or shown is FORBIDDEN or shown.photo == "":
            return defaultAvatar()
        found = self.avatars.picture(user, shown.photo)
        if isinstance(found, Deferred):
            return found.addCallback(avatarBody)
        return avatarBody(found)


class StatusesResource(StatusResource):
    """
    C{/plugins/presence/statuses}: the presence of many users at once, as
    one JSON object mapping each to its C{type=json} object.  Each entry
    is decided on its own, as a C{status} request for it would be; the
    rosters of users in subscribers-only mode are read concurrently.
    """

    answerTypes = ()

    def render_GET(self, request: server.Request) -> bytes | int:
        try:
            query = parseBatch(request.args, self.scope.domains, self.requesters)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        try:
            decisions = self.decideAll(query, self.rosterClient(request, query))
        except RosterReadsSpent as e:
            return self._tooMany(request, e)
        if isinstance(decisions, list):
            return self._answerBatch(request, query, decisions)
        return answerLater(request, decisions, lambda allowed: self._answerBatch(request, query, allowed))

    def _answerBatch(self, request: server.Request, query: BatchQuery, allowed: list[bool]) -> int:
        return self._deliver(request, self.renderer.statuses(
            [(user, self.shown(user, mayView)) for user, mayView in zip(query.users, allowed)]), None)


def answerLater(request: server.Request, pending: defer.Deferred, answer: Callable[[object], object]) -> int:
    """
    Have C{answer} answer C{request} with what C{pending} comes to, once
    it does, unless the client is gone by then.
    """
    gone = []
    request.notifyFinish().addErrback(gone.append)
    pending.addCallback(lambda result: None if gone else answer(result))
    return server.NOT_DONE_YET


def finishAnswer(request: server.Request, data: bytes) -> int:
    """
    Send C{data} as the whole answer, with its length but for a C{204} or
    C{304} (which have no body), and finish C{request}.
    """
    if request.code not in http.NO_BODY_CODES:
        request.setHeader(b"Content-Length", b"%d" % len(data))
    request.write(data)
    request.finish()
    return server.NOT_DONE_YET


def _send(request: server.Request, body: Body, code: int = 200) -> bytes:
    """
    Set the status and headers for C{body}; return its bytes.
    """
    if code != 200:
        request.setResponseCode(code)
    for name, value in body.headers:
        request.setHeader(name, value)
    return body.data


#: The headers of answers that are not presence: never kept.
_ERROR = TEXT + ((b"Cache-Control", NO_CACHE),)
_HEALTH = JSON + ((b"Cache-Control", NO_CACHE),)


def _plain(request: server.Request, code: int, text: str) -> bytes:
    return _send(request, Body(_ERROR, (text + "\n").encode("utf-8")), code)


def methodNotAllowed(request: server.Request, allowed: tuple[bytes, ...]) -> bytes:
    """
    The plain 405 answer for a method other than C{allowed}, which it names,
    whatever the method: twisted.web would answer an unknown one with a
    501 page of its own.
    """
    request.setHeader(b"Allow", b", ".join(allowed))
    names = [method.decode("ascii") for method in allowed]
    return _plain(request, 405, f"only {', '.join(names[:-1])} and {names[-1]} are allowed")


_FORM = b"application/x-www-form-urlencoded"


def formArguments(*encoded: bytes) -> dict[bytes, list[bytes]]:
    """
    The parameters of query strings and form bodies, by name: only C{&}
    separates them (not C{;}, which twisted.web also takes), and a name
    given in more than one keeps all its values, in order.

    @raise BadRequest: when there are more than L{MAX_PARAMETERS} items
        between C{&}s, empty ones included, in all.
    """
    args: dict[bytes, list[bytes]] = {}
    left = MAX_PARAMETERS
    for data in encoded:
        if not data:
            continue
        items = data.split(b"&", left)
        left -= len(items)
        if left < 0:
            raise BadRequest(f"more than {MAX_PARAMETERS} parameters")
        for item in items:
            name, equals, value = item.partition(b"=")
            if equals:
                args.setdefault(unquote_to_bytes(name.replace(b"+", b" ")), []).append(
                    unquote_to_bytes(value.replace(b"+", b" ")))
    return args


def _rawAnswer(status: bytes, body: Body) -> bytes:
    """
    A whole HTTP answer that closes the connection, for a request that
    twisted.web is not to answer.
    """
    headers = ((b"Server", SERVER), *body.headers, (b"Content-Length", b"%d" % len(body.data)),
               (b"Connection", b"close"))
    return b"".join([b"HTTP/1.1 " + status + b"\r\n", *(name + b": " + value + b"\r\n" for name, value in headers),
                     b"\r\n", body.data])


_BODY_TOO_LARGE = _rawAnswer(b"413 Request Entity Too Large", Body(_ERROR, b"request body too large\n"))


class PresenceRequest(server.Request):
    """
    A request whose body is capped at L{MAX_BODY} bytes: as soon as a
    larger one is announced or passes the cap, it is answered with 413
    and the connection is closed, the rest of the body unread.  Bodies
    are kept in memory, those of unknown length (chunked) too.

    Its C{args} are those of L{formArguments}, from the query string and
    a form-encoded POST body together: a parameter in both is given twice.
    They are read once, here: twisted.web is given the path without the
    query string, and its site does not parse bodies.  A request with
    more than L{MAX_PARAMETERS} is answered with 400.
    Answers name the server as C{presenced}, without a version.

    @ivar arrived: when it was received whole (the site's reactor seconds).
    """

    _received = 0
    arrived: float | None = None
    _refused = False
    defaultContentType = None

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.responseHeaders.setRawHeaders(b"Server", (SERVER,))
        server.Request.write(self, data)

    def gotLength(self, length: int | None) -> None:
        super().gotLength(MAX_BODY if length is None else min(length, MAX_BODY))
        if length is not None and length > MAX_BODY:
            self._refuseBody()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self._refuseBody()
        else:
            super().handleContentChunk(data)

    def _refuseBody(self) -> None:
        self._refused = True
        self.requestHeaders.removeHeader(b"expect")
        self.channel.transport.write(_BODY_TOO_LARGE)
        self.channel.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        self._target = path
        self.arrived = self.channel.site.reactor.seconds()
        super().requestReceived(command, path.partition(b"?")[0], version)

    def process(self) -> None:
        self.uri = self._target
        try:
            self.args = formArguments(self.uri.partition(b"?")[2], self._formBody())
        except BadRequest as e:
            self._refuse(400, str(e))
            return
        super().process()

    def _refuse(self, code: int, reason: str) -> None:
        body = _plain(self, code, reason)
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.write(body)
        self.finish()

    def _formBody(self) -> bytes:
        if self.method != b"POST":
            return b""
        contentType = self.getHeader(b"content-type")
        if contentType is None or contentType.split(b";")[0].strip().lower() != _FORM:
            return b""
        self.content.seek(0)
        body = self.content.read()
        self.content.seek(0)
        return body


class LinkState(Protocol):
    """
    Whether the XMPP link is up, and since when.
    """

    connected: bool
    since: float | None


class HealthReport:
    """
    Whether presence is known, and a summary for monitoring: what
    L{HealthResource} answers.
    """

    def __init__(self, link: LinkState, tracker: PresenceTracker) -> None:
        self.link = link
        self.tracker = tracker

    def __call__(self) -> tuple[bool, dict]:
        since = self.link.since
        return self.link.connected, {
            "xmpp": "connected" if self.link.connected else "disconnected",
            "since": None if since is None else datetime.fromtimestamp(since, timezone.utc).isoformat(),
            "users_online": self.tracker.onlineCount(),
            "version": __version__,
        }


class HealthResource(resource.Resource):
    """
    C{/plugins/presence/health}: whether presence is known.

    Answers 200 when the XMPP link is up and authenticated, 503 otherwise,
    both with a small JSON body: the C{xmpp} status, and for clients on
    the C{detailsFrom} networks the rest of the report (since when, how
    many users are online, the version).

    @ivar report: gives whether presence is known, and the body.
    @ivar detailsFrom: the networks of the clients shown the details.
    @ivar clients: tells a request's client, past trusted proxies; the
        site's (L{buildSite}).  A request whose client cannot be told gets
        no details.
    """

    isLeaf = True
    detailsFrom: tuple[IPv4Network | IPv6Network, ...] = ()

    def __init__(self, report: Callable[[], tuple[bool, dict]]) -> None:
        super().__init__()
        self.report = report
        self.clients = ClientAddressFormatter()

    def reconfig(self, settings: Settings) -> None:
        """
        Show the details to the networks of new settings from now on.
        """
        self.detailsFrom = settings.http.health_details_from

    def render(self, request: server.Request) -> bytes:
        """
        Answer GET and HEAD; any other method gets a plain 405.
        """
        if request.method not in (b"GET", b"HEAD"):
            return methodNotAllowed(request, (b"GET", b"HEAD"))
        return super().render(request)

    def render_GET(self, request: server.Request) -> bytes:
        healthy, body = self.report()
        if not self.clients.clientOn(request, self.detailsFrom):
            body = {"xmpp": body["xmpp"]}
        return _send(request, Body(_HEALTH, json.dumps(body).encode("utf-8")), 200 if healthy else 503)

    def render_HEAD(self, request: server.Request) -> bytes:
        """
        The headers of the GET answer, its length included, and no body.
        """
        request.setHeader(b"Content-Length", b"%d" % len(self.render_GET(request)))
        return b""


class AccessLog:
    """
    Where access log lines go: standard output or a file, written through a
    buffer that is flushed every second.

    It is what L{PresenceSite} hands to twisted.web as its log file; the
    site writes lines in the combined log format.  A file it creates is
    readable by its owner and group only (mode 0640, less the umask): the
    lines say who asked about whom.
    """

    def __init__(self, target: str, clock: IReactorTime) -> None:
        self._file: IO[str] = (
            sys.__stdout__ if target == "stdout"
            else open(target, "a", buffering=64 * 1024, encoding="utf-8", newline="\n", opener=_ownerAndGroupOnly)
        )
        self.write = self._file.write
        self._flusher = task.LoopingCall(self.flush)
        self._flusher.clock = clock
        self._flusher.start(1.0, now=False)

    def flush(self) -> None:
        """
        Write out what is buffered.
        """
        self._file.flush()

    def close(self) -> None:
        """
        Flush, stop flushing, and close the file (standard output stays open).
        """
        if self._flusher.running:
            self._flusher.stop()
        self.flush()
        if self._file is not sys.__stdout__:
            self._file.close()


def _ownerAndGroupOnly(path: str, flags: int) -> int:
    return os.open(path, flags, 0o640)


class ClientAddressFormatter:
    """
    Formats access log lines in the combined log format, naming as client
    the address a trusted reverse proxy forwarded.

    When the peer is one of C{trusted}, C{X-Forwarded-For} is read from the
    right, past the trusted proxies, to the first address that is not one
    of them: the client as the outermost trusted proxy saw it.  From any
    other peer the header is ignored, so clients cannot choose what is
    logged.  The health answer asks it who the client is too.

    @ivar trusted: IP networks of the trusted proxies.
    """

    def __init__(self, trusted: tuple[IPv4Network | IPv6Network, ...] = ()) -> None:
        self.trusted = trusted

    def __call__(self, timestamp: str, request: server.Request) -> str:
        client = self.forwardedClient(request) if self.trusted else None
        return combinedLogLine(timestamp, request, request.getClientAddress() if client is None else client)

    def forwardedClient(self, request: server.Request) -> address.IPv4Address | address.IPv6Address | None:
        """
        The client's address as L{clientIP} tells it, or C{None} to use
        the peer when it cannot be told.
        """
        client = self.clientIP(request)
        if client is None:
            return None
        kind = address.IPv6Address if client.version == 6 else address.IPv4Address
        return kind("TCP", str(client), 0)

    def clientOn(self, request: server.Request, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
        """
        Whether the request's client, as L{clientIP} tells it, is on one of
        C{networks}; not when it cannot be told.
        """
        client = self.clientIP(request)
        return client is not None and within(client, networks)

    def clientIP(self, request: server.Request) -> IPv4Address | IPv6Address | None:
        """
        The IP address of the client: the peer's or, when the peer is a
        trusted proxy that sent C{X-Forwarded-For}, the one it names.

        C{None} when it cannot be told: the request was forwarded but
        not through trusted proxies (a forwarding header from another
        peer, C{Forwarded} or C{X-Real-IP} without C{X-Forwarded-For}),
        the header is malformed, or the peer is not on IP.
        """
        peer = request.getClientAddress()
        if not isinstance(peer, (address.IPv4Address, address.IPv6Address)):
            return None
        try:
            client = ip_address(peer.host)
        except ValueError:
            return None
        headers = request.requestHeaders
        header = b",".join(headers.getRawHeaders(b"x-forwarded-for", []))
        hops = [hop.strip() for hop in header.decode("latin-1").split(",") if hop.strip()]
        if not hops or not within(client, self.trusted):
            forwarded = hops or any(headers.hasHeader(name) for name in _OTHER_FORWARDING_HEADERS)
            return None if forwarded else client
        for hop in reversed(hops):
            try:
                client = ip_address(hop)
            except ValueError:
                return None
            if not within(client, self.trusted):
                break
        return client


#: Headers that proxies name the client in, which presenced does not read.
_OTHER_FORWARDING_HEADERS = (b"forwarded", b"x-real-ip")


def combinedLogLine(timestamp: str, request: server.Request, client) -> str:
    """
    The access log line of C{request} from C{client} in the combined log
    format, the same as twisted.web's C{combinedLogFormatter} writes: each
    field escaped as in a double-quoted Python bytes literal.  Short fields,
    which repeat from request to request (method, URI, referrer, user
    agent), are escaped once and remembered.
    """
    host = client.host if isinstance(client, (address.IPv4Address, address.IPv6Address)) else "-"
    referrer = request.getHeader(b"referer") or b"-"
    agent = request.getHeader(b"user-agent") or b"-"
    return (
        f'"{_logField(host)}" - - {timestamp} '
        f'"{_logField(request.method)} {_logField(request.uri)} {_logField(request.clientproto)}" '
        f'{request.code:d} {request.sentLength or "-"} "{_logField(referrer)}" "{_logField(agent)}"'
    )


#: Longest log field that is remembered once escaped.
_REMEMBERED_FIELD = 512


def _logField(value: bytes | str) -> str:
    if len(value) > _REMEMBERED_FIELD:
        return _escapeLogField(value)
    return _rememberedLogField(value)


def _escapeLogField(value: bytes | str) -> str:
    literal = repr(value.encode("ascii") if isinstance(value, str) else value)
    inside = literal[2:-1]
    if literal[1] == "'":
        return inside.replace('"', '\\"').replace("\\'", "'")
    return inside


_rememberedLogField = lru_cache(maxsize=4096)(_escapeLogField)


class PresenceSite(server.Site):
    """
    The HTTP site: presence answers, health, metrics, and the access log.

    @ivar status: the status resource.
    @ivar statuses: the resource answering for many users at once.
    @ivar health: the health resource.
    @ivar answering: every other resource that answers as C{status} does,
        with its settings.
    @ivar metrics: the metrics resource, if any.
    @ivar endpoints: the resources under C{/plugins/presence/}, by name.
    @ivar limits: where the connection caps and timeouts tell what they
        close.
    @ivar connections: the caps on open connections.
    @ivar requestObserver: called with every finished request, as it is
        logged, while anyone may read the metrics (C{[http] metrics_from}
        not empty); C{None}: nothing is.
    """

    noisy = False
    displayTracebacks = False
    requestFactory = PresenceRequest
    protocol = GuardedChannel

    def __init__(self, root: resource.IResource, status: StatusResource, health: HealthResource, reactor,
                 statuses: StatusesResource | None = None, answering: tuple[StatusResource, ...] = (),
                 metrics: MetricsResource | None = None, limits: Limits | None = None) -> None:
        self.logFormatter = ClientAddressFormatter()
        super().__init__(root, reactor=reactor, logFormatter=self.logFormatter, parsePOSTFormSubmission=False)
        self.limits = Limits(reactor) if limits is None else limits
        self.connections = ConnectionCaps(self.limits)
        self.status = status
        self.statuses = statuses
        self.answering = answering
        self.health = health
        self.metrics = metrics
        self.endpoints: Mapping[bytes, resource.IResource] = {}
        self.requestObserver: Callable[[server.Request], None] | None = None
        self.accessLog: AccessLog | None = None
        self._counting = True

    def reconfig(self, settings: Settings, images: dict[State, Body]) -> None:
        """
        Serve with new settings, and the icons they name, from now on.
        """
        http = settings.http
        self.logFormatter.trusted = self.connections.trusted = http.trusted_proxies
        self.connections.maxConnections = http.max_connections
        self.connections.maxPerClient = http.max_connections_per_client
        self.timeOut = http.request_timeout
        self.status.reconfig(settings, images)
        if self.statuses is not None:
            self.statuses.reconfig(settings, images)
        for answers in self.answering:
            answers.reconfig(settings, images)
        self.health.reconfig(settings)
        if self.metrics is not None:
            self.metrics.reconfig(settings)
        self._counting = bool(settings.http.metrics_from)

    def buildProtocol(self, addr) -> http.HTTPChannel | Refused:
        """
        A channel for a new connection, or a L{Refused} one when it would
        go over a cap of L{connections}.
        """
        host = getattr(addr, "host", None)
        if not self.connections.admit(host):
            return Refused()
        channel = super().buildProtocol(addr)
        channel.host, channel.counted = host, True
        return channel

    def log(self, request: server.Request) -> None:
        super().log(request)
        if self._counting and self.requestObserver is not None:
            self.requestObserver(request)

    def setAccessLog(self, accessLog: AccessLog | None) -> None:
        """
        Write access log lines to C{accessLog} from now on, or nowhere.
        """
        previous, self.accessLog = self.accessLog, accessLog
        self.logFile = accessLog
        if previous is not None and previous is not accessLog:
            previous.close()

    def startFactory(self) -> None:
        super().startFactory()
        self.logFile = self.accessLog

    def stopFactory(self) -> None:
        self.logFile = None
        super().stopFactory()


_NOT_FOUND = pages.notFound("Not found", "There is no such resource.")


def notFound(request: server.Request) -> bytes:
    """
    The answer to a path that names nothing, whatever the method.
    """
    return _NOT_FOUND.render(request)


class _Directory(resource.Resource):
    """
    A path segment holding named children; anything else, the segment
    itself included, is not found, whatever the method.
    """

    def getChild(self, name: bytes, request: server.Request) -> resource.IResource:
        return _NOT_FOUND

    def render(self, request: server.Request) -> bytes:
        return notFound(request)


def buildSite(status: StatusResource, health: HealthResource, reactor,
              more: Mapping[bytes, resource.Resource] = MappingProxyType({}),
              metrics: MetricsResource | None = None, limits: Limits | None = None) -> PresenceSite:
    """
    The HTTP site: C{/plugins/presence/status}, C{/plugins/presence/statuses}
    (answering with what C{status} is given, and its settings),
    C{/plugins/presence/health}, C{more} resources by name under
    C{/plugins/presence/} (those that answer as C{status} does get its
    settings too, and its client formatter) and, given the metrics
    resource, C{/plugins/presence/metrics}.
    """
    statuses = StatusesResource(status.tracker, status.policy, status.renderer, status.scope, status.requesters)
    root = _Directory()
    plugins = _Directory()
    presence = _Directory()
    root.putChild(b"plugins", plugins)
    plugins.putChild(b"presence", presence)
    presence.putChild(b"status", status)
    presence.putChild(b"statuses", statuses)
    presence.putChild(b"health", health)
    for name, child in more.items():
        presence.putChild(name, child)
    if metrics is not None:
        presence.putChild(b"metrics", metrics)
    answering = tuple(child for child in more.values() if isinstance(child, StatusResource))
    site = PresenceSite(root, status, health, reactor, statuses, answering, metrics, limits)
    site.endpoints = presence.children
    health.clients = status.clients = statuses.clients = site.logFormatter
    for child in [*more.values(), metrics]:
        if hasattr(child, "clients"):
            child.clients = site.logFormatter
    return site
