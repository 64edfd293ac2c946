"""
How the answers of the presence API reach browsers and caches: the
headers that let pages on other origins read them (CORS), the validators
that let caches revalidate them (C{ETag}, C{Last-Modified}) and the
C{304 Not Modified} answers to those revalidations, and C{Cache-Control}.

What can be is prepared once for each settings: the headers every answer
gets, those of each allowed origin, those of a preflight.  A request then
costs a tag lookup (a body seen before is not hashed again), at most two
header comparisons and, with a list of origins, the check of its
C{Origin}.
"""

from __future__ import annotations

import re
from base64 import urlsafe_b64encode
from calendar import timegm
from datetime import datetime
from functools import lru_cache
from hashlib import blake2b
from time import gmtime
from typing import Iterable

from twisted.web import server

from presenced.answers import Body, Headers
from presenced.config import Settings, originOf
from presenced.presence import Shown, State

#: The methods of the status resources, which C{Allow} and preflights name.
METHODS = (b"GET", b"HEAD", b"POST", b"OPTIONS")
#: The request headers a page may send: those of revalidation, and a form's.
ALLOWED_HEADERS = b"If-None-Match, If-Modified-Since, Content-Type"
#: Seconds a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE = 86400

_ALLOW = b", ".join(METHODS)
_EXPOSED = (b"Access-Control-Expose-Headers", b"ETag, Last-Modified")
_VARY = (b"Vary", b"Origin")


class Delivery:
    """
    The headers around each answer, as one settings asks for them.

    @ivar origins: the origins whose pages may read the answers: C{("*",)}
        any, C{()} none, or origins as L{originOf} writes them.
    @ivar maxAge: seconds a cache may use an answer without revalidating.
    @ivar lastSeen: whether answers tell when an offline user was last
        seen; when they do not, nor does C{Last-Modified}.
    """

    #: Bodies up to this size have their tags remembered.
    rememberedBody = 64 * 1024
    #: At most this many bytes of bodies are remembered.
    rememberedBytes = 8 * 1024 * 1024

    def __init__(self, origins: tuple[str, ...] = ("*",), maxAge: int = 0, lastSeen: bool = True) -> None:
        self.origins = origins
        self.maxAge = maxAge
        self.lastSeen = lastSeen
        anyOrigin = origins == ("*",)
        self._anyOrigin: Headers = ((b"Access-Control-Allow-Origin", b"*"), _EXPOSED) if anyOrigin else ()
        self._always: Headers = (
            (b"Cache-Control", b"max-age=%d" % maxAge if maxAge else b"no-cache"), *self._anyOrigin)
        self._listed = {} if anyOrigin else {
            origin.encode("ascii"): (_VARY, (b"Access-Control-Allow-Origin", origin.encode("ascii")), _EXPOSED)
            for origin in origins}
        self._preflight: Headers = (
            (b"Access-Control-Allow-Headers", ALLOWED_HEADERS),
            (b"Access-Control-Max-Age", b"%d" % PREFLIGHT_MAX_AGE),
        )
        self._tags: dict[bytes, tuple[Headers, bytes]] = {}
        self._rememberedSize = 0

    @classmethod
    def fromSettings(cls, settings: Settings) -> Delivery:
        """
        The delivery that C{settings} ask for.
        """
        return cls(settings.http.cors_origins, settings.http.max_age, settings.presence.last_seen)

    def lastModified(self, shown: Shown) -> float | None:
        """
        When C{shown} last changed, as C{Last-Modified} may tell it: the
        later of its C{since} and C{lastSeen}; C{None} when neither is
        known, and for an offline user when answers do not tell when they
        were last seen (they went offline then).
        """
        since, lastSeen = shown.since, shown.lastSeen
        if not self.lastSeen:
            return None if shown.state is State.OFFLINE else since
        if lastSeen is None or since is not None and since >= lastSeen:
            return since
        return lastSeen

    def send(self, request: server.Request, body: Body, modified: float | None = None) -> bytes:
        """
        Set the status and headers of C{body} as a C{200} answer, or of a
        C{304} when the request's C{If-None-Match} or C{If-Modified-Since}
        say that the client has it; return the bytes to send (none for a
        C{304}).

        @param modified: when the answer last changed (epoch seconds), as
            L{lastModified} tells it; C{None} when unknown.
        """
        tag = self.tag(body)
        lastModified = None if modified is None else _httpDate(int(modified))
        requestHeaders = request.requestHeaders
        matches = requestHeaders.getRawHeaders(b"if-none-match")
        if matches is not None:
            unchanged = _matches(matches, tag)
        elif lastModified is not None:
            since = requestHeaders.getRawHeaders(b"if-modified-since")
            unchanged = since is not None and len(since) == 1 and _notModifiedSince(since[0], int(modified))
        else:
            unchanged = False
        if unchanged:
            request.setResponseCode(304)
        else:
            for name, value in body.headers:
                request.setHeader(name, value)
        for name, value in self._always:
            request.setHeader(name, value)
        if self._listed:
            self._allowListedOrigin(request)
        request.setHeader(b"ETag", tag)
        if lastModified is not None:
            request.setHeader(b"Last-Modified", lastModified)
        return b"" if unchanged else body.data

    def allowOrigin(self, request: server.Request) -> bool:
        """
        Set the headers that let the page that sent C{request} read the
        answer, if its origin may; return whether it may.
        """
        for name, value in self._anyOrigin:
            request.setHeader(name, value)
        return self._allowListedOrigin(request) if self._listed else bool(self._anyOrigin)

    def preflight(self, request: server.Request, methods: tuple[bytes, ...] = METHODS) -> bytes:
        """
        Answer an C{OPTIONS} request, a preflight or not: C{204}, the
        allowed C{methods} (the resource's), and for an origin that may read
        the answers what its page may send.
        """
        allowed = _ALLOW if methods == METHODS else b", ".join(methods)
        request.setResponseCode(204)
        request.setHeader(b"Allow", allowed)
        if self.allowOrigin(request):
            request.setHeader(b"Access-Control-Allow-Methods", allowed)
            for name, value in self._preflight:
                request.setHeader(name, value)
        return b""

    def tag(self, body: Body) -> bytes:
        """
        The strong entity tag of C{body}, quoted: the same for the same
        headers and bytes, another for any change of either.
        """
        data = body.data
        remembered = self._tags.get(data)
        if remembered is not None and remembered[0] is body.headers:
            return remembered[1]
        tag = _tagOf(body.headers, data)
        if len(data) <= self.rememberedBody:
            self._remember(data, body.headers, tag)
        return tag

    def _remember(self, data: bytes, headers: Headers, tag: bytes) -> None:
        previous = self._tags.pop(data, None)
        if previous is None:
            self._rememberedSize += len(data)
        self._tags[data] = (headers, tag)
        while self._rememberedSize > self.rememberedBytes:
            oldest = next(iter(self._tags))
            del self._tags[oldest]
            self._rememberedSize -= len(oldest)

    def _allowListedOrigin(self, request: server.Request) -> bool:
        """
        Name the request's C{Origin} if it is one of the listed origins, and
        say that the answer varies with it in any case.
        """
        origins = request.requestHeaders.getRawHeaders(b"origin")
        headers = None
        if origins is not None and len(origins) == 1:
            headers = self._listed.get(origins[0]) or self._listed.get(_normalOrigin(origins[0]))
        for name, value in headers or (_VARY,):
            request.setHeader(name, value)
        return headers is not None


def _tagOf(headers: Headers, data: bytes) -> bytes:
    digest = blake2b(digest_size=12)
    for name, value in headers:
        digest.update(b"%s: %s\n" % (name, value))
    digest.update(b"\n")
    digest.update(data)
    return b'"' + urlsafe_b64encode(digest.digest()) + b'"'


def _matches(fields: Iterable[bytes], tag: bytes) -> bool:
    """
    Whether C{If-None-Match} C{fields} name C{tag} or C{*}, compared as
    RFC 9110 says for that header: C{W/"x"} names C{"x"}.
    """
    for field in fields:
        if field == tag:
            return True
        for item in field.split(b","):
            item = item.strip()
            if item == b"*" or (item[2:] if item.startswith(b"W/") else item) == tag:
                return True
    return False


def _notModifiedSince(field: bytes, modified: int) -> bool:
    since = _parseHTTPDate(field)
    return since is not None and since >= modified


@lru_cache(maxsize=4096)
def _httpDate(seconds: int) -> bytes:
    """
    C{seconds} since the epoch as an HTTP date (IMF-fixdate).
    """
    when = gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _WEEKDAYS[when.tm_wday], when.tm_mday, _MONTHS[when.tm_mon - 1], when.tm_year,
        when.tm_hour, when.tm_min, when.tm_sec)


_WEEKDAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_LONG_WEEKDAYS = (b"Monday", b"Tuesday", b"Wednesday", b"Thursday", b"Friday", b"Saturday", b"Sunday")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_MONTH = b"(" + b"|".join(_MONTHS) + b")"
_TIME = rb"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE = re.compile(b"(?:" + b"|".join(_WEEKDAYS) + rb"), (\d\d) " + _MONTH + rb" (\d{4}) " + _TIME + b" GMT")
_RFC850_DATE = re.compile(b"(?:" + b"|".join(_LONG_WEEKDAYS) + rb"), (\d\d)-" + _MONTH + rb"-(\d\d) " + _TIME
                          + b" GMT")
_ASCTIME_DATE = re.compile(b"(?:" + b"|".join(_WEEKDAYS) + b") " + _MONTH + rb" ([ \d]\d) " + _TIME
                           + rb" (\d{4})")


@lru_cache(maxsize=1024)
def _parseHTTPDate(field: bytes) -> int | None:
    """
    The seconds since the epoch of an HTTP date in any of the three forms
    of RFC 9110 (IMF-fixdate, RFC 850, asctime), or C{None} if C{field} is
    none of them.
    """
    field = field.strip()
    parts = _IMF_FIXDATE.fullmatch(field)
    if parts is not None:
        day, month, year, hour, minute, second = parts.groups()
    else:
        parts = _RFC850_DATE.fullmatch(field)
        if parts is not None:
            day, month, shortYear, hour, minute, second = parts.groups()
            year = b"%d" % (int(shortYear) + (2000 if int(shortYear) < 70 else 1900))
        else:
            parts = _ASCTIME_DATE.fullmatch(field)
            if parts is None:
                return None
            month, day, hour, minute, second, year = parts.groups()
    try:
        when = datetime(int(year), _MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    return timegm(when.timetuple())


@lru_cache(maxsize=1024)
def _normalOrigin(field: bytes) -> bytes | None:
    """
    The origin C{field} names as L{originOf} writes it, or C{None} for
    C{null} and anything that is not an origin.
    """
    try:
        return originOf(field.decode("ascii")).encode("ascii")
    except (UnicodeDecodeError, ValueError):
        return None
