"""
Metrics: what presenced does, in the Prometheus text format.

L{Metrics} defines every metric presenced exports, once, on a registry of
its own (not C{prometheus_client}'s global one, so that several services
in one process keep apart), and is told what happens by the parts it
watches (L{Metrics.watch}).  L{MetricsResource} serves them at
C{/plugins/presence/metrics} to the clients of C{[http] metrics_from}.

No label says who asked or about whom: each label takes a few values
presenced chooses, whatever callers send, so the number of series stays
bounded.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from twisted.internet.interfaces import IReactorTime
from twisted.web import resource, server

from presenced.answers import NO_CACHE, TEXT, Body, answerHeaders
from presenced.web import ClientAddressFormatter, notFound

if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network

    from presenced.config import Settings
    from presenced.service import PresenceService

#: The C{endpoint} label of a request for anything but an endpoint.
OTHER = "other"
#: The C{type} label of a request whose C{type} is not one the endpoint answers.
INVALID = "invalid"

#: The results of a reload: applied (or nothing to change); the file had
#: errors, or applying it failed; valid, but it cannot be applied while
#: presenced runs (nothing was changed).
RELOAD_RESULTS = ("ok", "failed", "refused")

_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROSTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PlainCounter:
    """
    A counter, with labels, kept in plain numbers and read when the
    registry is collected.

    presenced counts in the reactor's thread only, so it needs none of
    the locks of C{prometheus_client}'s own counters, which cost a
    request more than all the rest of counting it.

    @ivar counts: the count of each series, by label values (C{str()}
        of each is the label's value).
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], registry: CollectorRegistry,
                 series: Iterable[tuple] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.counts: dict[tuple, float] = {key: 0 for key in series}
        registry.register(self)

    def inc(self, key: tuple = ()) -> None:
        """
        Add one to the series of C{key}, its label values.
        """
        self.counts[key] = self.counts.get(key, 0) + 1

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, count in list(self.counts.items()):
            family.add_metric([str(value) for value in key], count)
        return [family]


class PlainHistogram:
    """
    A histogram, with labels, kept in plain numbers as L{PlainCounter} is.

    @ivar bounds: the upper bounds of its buckets, ascending, C{+Inf} left out.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], bounds: tuple[float, ...],
                 registry: CollectorRegistry, series: Iterable[tuple] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = bounds
        self._series: dict[tuple, list[float]] = {}
        for key in series:
            self._counts(key)
        registry.register(self)

    def _counts(self, key: tuple) -> list[float]:
        # One count per bucket, +Inf's last, then the sum.
        counts = self._series[key] = [0] * (len(self.bounds) + 1) + [0.0]
        return counts

    def observe(self, amount: float, key: tuple = ()) -> None:
        """
        Count C{amount} in the series of C{key}, its label values.
        """
        counts = self._series.get(key)
        if counts is None:
            counts = self._counts(key)
        counts[bisect_left(self.bounds, amount)] += 1
        counts[-1] += amount

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, counts in list(self._series.items()):
            buckets, cumulative = [], 0
            for bound, count in zip((*self.bounds, float("inf")), counts):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([str(value) for value in key], buckets, sum_value=counts[-1])
        return [family]


class Metrics:
    """
    Every metric of presenced, on one registry, and what the parts it
    watches tell it.

    The methods the parts call (L{requestFinished}, L{presenceReceived},
    L{rosterLookup}, L{rosterFetched}, L{reloaded}, L{limited}) cost a
    dictionary lookup and an addition or two (L{PlainCounter}); they are
    called in the reactor's thread only, as the registry is read.

    @ivar registry: the registry holding them, presenced's own.
    @ivar clock: what request durations are measured with; the site's.
    @ivar endpoints: the resources under C{/plugins/presence/}, by name:
        the site's.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        registry = self.registry = CollectorRegistry()
        self.httpRequests = PlainCounter(
            "presenced_http_requests", "HTTP requests answered, by endpoint (status, health, metrics, ...; "
            "other: any other path), answer type (for endpoints that take one; invalid: one they do not "
            "answer) and status code.", ("endpoint", "type", "code"), registry)
        self.httpDuration = PlainHistogram(
            "presenced_http_request_duration_seconds", "Seconds from a request's arrival to its answer, "
            "by endpoint.", ("endpoint",), _HTTP_BUCKETS, registry)
        self.xmppConnected = Gauge(
            "presenced_xmpp_connected", "1 while the link to the XMPP server is up and authenticated, "
            "else 0.", registry=registry)
        self.xmppReconnects = PlainCounter(
            "presenced_xmpp_reconnects", "Times the link to the XMPP server was set up again after it "
            "had been up.", (), registry, series=[()])
        self.presenceStanzas = PlainCounter(
            "presenced_presence_stanzas", "Presence stanzas received from the XMPP server.", (), registry,
            series=[()])
        self.usersOnline = Gauge(
            "presenced_users_online", "Users with at least one resource online.", registry=registry)
        self.resourcesOnline = Gauge(
            "presenced_resources_online", "Resources online, of all users.", registry=registry)
        self.rosterLookups = PlainCounter(
            "presenced_roster_cache_lookups", "Roster cache lookups for subscribers-only answers, by "
            "result: hit (answered from the cache) or miss (the roster is read, or a read under way "
            "is awaited).", ("result",), registry, series=[("hit",), ("miss",)])
        self.rosterFetches = PlainHistogram(
            "presenced_roster_fetch_seconds", "Seconds each roster read from the XMPP server took, by "
            "result: ok, or failed (an error, no answer in time, no link).", ("result",), _ROSTER_BUCKETS,
            registry, series=[("ok",), ("failed",)])
        self.reloads = PlainCounter(
            "presenced_reloads", "Reloads of the settings, by result: ok (applied, or nothing changed), "
            "failed (the file has errors, or applying it failed) or refused (valid, but it cannot "
            "be applied while presenced runs).", ("result",), registry,
            series=[(result,) for result in RELOAD_RESULTS])
        self.limits = PlainCounter(
            "presenced_limited", "Things refused, cut or dropped by one of presenced's limits, by limit.",
            ("limit",), registry)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        self.endpoints: Mapping[bytes, resource.IResource] = {}
        self._endpoints: dict[bytes, tuple[str, dict[bytes, str] | None]] = {}
        self._everConnected = False

    def watch(self, service: PresenceService) -> None:
        """
        Be told what C{service}'s parts do from now on: its site's requests,
        its link, its presence feed and model, its roster cache (in
        component mode), and its reloads.
        """
        site = service.site
        self.endpoints = site.endpoints
        site.requestObserver = self.requestFinished
        service.link.listeners.append(self.linkChanged)
        service.feed.metrics = self
        tracker = service.tracker
        self.usersOnline.set_function(tracker.onlineCount)
        self.resourcesOnline.set_function(tracker.resourceCount)
        rosters = getattr(service.mode, "rosters", None)
        if rosters is not None:
            rosters.metrics = self
        service.limits.counted = self.limited
        service.metrics = self

    def requestFinished(self, request: server.Request) -> None:
        """
        Count a finished request, and how long it took since it arrived
        (C{request.arrived}, when it has it).

        Its C{endpoint} is the name of the resource under
        C{/plugins/presence/} that answered it, or L{OTHER}; its C{type}
        the C{type} parameter for an endpoint that declares the types it
        answers (C{answerTypes}, the first being the default), L{INVALID}
        if it is not one of them, and empty for other endpoints.
        """
        prepath = getattr(request, "prepath", None)
        endpoint, types = OTHER, None
        if prepath is not None and len(prepath) == 3 and prepath[0] == b"plugins" and prepath[1] == b"presence":
            known = self._endpoints.get(prepath[2])
            if known is None:
                known = self._endpoint(prepath[2])
            endpoint, types = known
        kind = ""
        if types is not None:
            values = request.args.get(b"type")
            if not values:
                kind = types[b""]
            elif len(values) > 1:
                kind = INVALID
            else:
                kind = types.get(values[0], INVALID)
        self.httpRequests.inc((endpoint, kind, request.code))
        arrived = getattr(request, "arrived", None)
        if arrived is not None:
            self.httpDuration.observe(self.clock.seconds() - arrived, (endpoint,))

    def _endpoint(self, name: bytes) -> tuple[str, dict[bytes, str] | None]:
        """
        The C{endpoint} label of the resource at C{name}, and its answer
        types by C{type} value (C{b""}: the default), remembered for the
        names of endpoints only.
        """
        child = self.endpoints.get(name)
        if child is None:
            return OTHER, None
        answerTypes = getattr(child, "answerTypes", None)
        types = None
        if answerTypes:
            types = {kind.encode(): kind for kind in answerTypes}
            types[b""] = answerTypes[0]
        known = self._endpoints[name] = (name.decode("ascii"), types)
        return known

    def linkChanged(self, connected: bool) -> None:
        """
        The link to the XMPP server went up or down.
        """
        self.xmppConnected.set(1 if connected else 0)
        if connected:
            if self._everConnected:
                self.xmppReconnects.inc()
            self._everConnected = True

    def presenceReceived(self) -> None:
        """
        A presence stanza came from the XMPP server.
        """
        self.presenceStanzas.inc()

    def rosterLookup(self, hit: bool) -> None:
        """
        The roster cache was asked for a user's subscribers, and had them
        (C{hit}) or not.
        """
        self.rosterLookups.inc(_HIT if hit else _MISS)

    def rosterFetched(self, seconds: float, ok: bool) -> None:
        """
        A roster read took C{seconds}, and gave the roster (C{ok}) or failed.
        """
        self.rosterFetches.observe(seconds, _OK if ok else _FAILED)

    def reloaded(self, result: str) -> None:
        """
        A reload ended with C{result}, one of L{RELOAD_RESULTS}.
        """
        self.reloads.inc((result,))

    def limited(self, limit: str) -> None:
        """
        One of presenced's limits refused, cut or dropped something.

        @param limit: the limit's name, one fixed in the code (never
            anything a caller or a user sent).
        """
        self.limits.inc((limit,))


_HIT, _MISS, _OK, _FAILED = ("hit",), ("miss",), ("ok",), ("failed",)


class MetricsResource(resource.Resource):
    """
    C{/plugins/presence/metrics}: the metrics, in the Prometheus text
    format (version 0.0.4), to clients on the C{readersFrom} networks.

    Anyone else gets the answer of a path that names nothing, for every
    method: that the endpoint exists is not told either.  Behind trusted
    proxies the client they name counts, as for the details of health
    (L{ClientAddressFormatter.clientOn}).

    @ivar registry: what is served.
    @ivar readersFrom: the networks of the clients it is served to.
    @ivar clients: tells a request's client, past trusted proxies; the
        site's.
    """

    isLeaf = True
    readersFrom: tuple[IPv4Network | IPv6Network, ...] = ()

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry
        self.clients = ClientAddressFormatter()

    def reconfig(self, settings: Settings) -> None:
        """
        Serve the networks of new settings from now on.
        """
        self.readersFrom = settings.http.metrics_from

    def render(self, request: server.Request) -> bytes:
        if not self.clients.clientOn(request, self.readersFrom):
            return notFound(request)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            body = Body(TEXT + _NEVER_KEPT, b"only GET and HEAD are allowed\n")
        else:
            body = Body(_METRICS, generate_latest(self.registry))
        for name, value in body.headers:
            request.setHeader(name, value)
        request.setHeader(b"Content-Length", b"%d" % len(body.data))
        return b"" if request.method == b"HEAD" else body.data


_NEVER_KEPT = ((b"Cache-Control", NO_CACHE),)
#: The headers of the metrics: the Prometheus text format, version 0.0.4.
_METRICS = answerHeaders(b"text/plain; version=0.0.4; charset=utf-8") + _NEVER_KEPT
