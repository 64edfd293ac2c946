"""
Who may see whose presence.

The web side asks one question, L{AccessPolicy.mayView}; the answer comes
from the settings and, for subscribers-only service, from the user's
roster, read over XMPP and cached briefly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from presenced.config import Settings

from presenced.ratelimit import ClientBudget, Limits, RateLimitedLog

if TYPE_CHECKING:
    from presenced.metrics import Metrics

SubscriberSource = Callable[[str], "defer.Deferred[frozenset[str]]"]


class ServedScope:
    """
    The domains whose users presenced serves: the one answer, shared by
    ingestion, access and the web side, to whether a user is one of ours.

    @ivar domains: the served domains, normalised.
    """

    def __init__(self, domains: frozenset[str]) -> None:
        self.domains = domains

    def __contains__(self, domain: object) -> bool:
        return domain in self.domains

    def reconfig(self, settings: Settings) -> None:
        """
        Serve the domains of new settings from now on.
        """
        self.domains = settings.xmpp.servedDomains


class ViewPolicy(Protocol):
    """
    The one question the web side asks about access.
    """

    def mayView(self, user: str, requester: str | None, client: str | None = None) -> bool | defer.Deferred[bool]:
        """
        Whether C{requester} may see C{user}'s presence: at once, or later.

        @param client: the address of the HTTP client asking, if known.
        @raise RosterReadsSpent: C{client} may cause no more roster reads
            for now.
        """


class RostersBusy(Exception):
    """
    A roster was not read: as many reads as allowed were under way, and
    none ended in time for this one.
    """


class RosterReadsSpent(Exception):
    """
    The client has caused as many roster reads as it may in a minute.

    @ivar retryAfter: whole seconds until it may cause more.
    """

    def __init__(self, retryAfter: int) -> None:
        super().__init__(f"too many roster reads; retry after {retryAfter} s")
        self.retryAfter = retryAfter


class RosterCache:
    """
    The presence subscribers of users, fetched on demand and kept for a
    while.

    The server does not tell the component when a roster changes, so an
    entry is trusted for C{ttl} seconds only.  Concurrent questions about
    the same user share one fetch.  Failed fetches are not cached; a user
    without subscribers is, as any other.  At most L{maxEntries} rosters
    are kept, the oldest dropped first.

    Rosters are read from the XMPP server, whose work they are: at most
    C{maxInFlight} at once.  The users beyond wait their turn, in order,
    at most L{maxWaiting} of them and for at most L{maxWait} seconds;
    then their readers get L{RostersBusy}, and L{limits} is told.

    @ivar metrics: told of every lookup and fetch; C{None}: nothing is.
    """

    maxEntries = 10_000
    maxWaiting = 1024
    maxWait = 2.0
    metrics: Metrics | None = None

    def __init__(self, fetch: SubscriberSource, clock: IReactorTime, ttl: float, maxInFlight: int = 64,
                 limits: Limits | None = None) -> None:
        self.fetch = fetch
        self.clock = clock
        self.ttl = ttl
        self.maxInFlight = maxInFlight
        self.limits = Limits(clock) if limits is None else limits
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}
        self._inFlight: dict[str, list[defer.Deferred[frozenset[str]]]] = {}
        self._waiting: dict[str, tuple[list[defer.Deferred[frozenset[str]]], object]] = {}

    def subscribers(self, user: str) -> frozenset[str] | defer.Deferred[frozenset[str]]:
        """
        The bare JIDs subscribed to C{user}'s presence: at once when the
        roster is cached, else a Deferred.
        """
        entry = self._entries.get(user)
        if entry is not None:
            if entry[0] > self.clock.seconds():
                if self.metrics is not None:
                    self.metrics.rosterLookup(hit=True)
                return entry[1]
            del self._entries[user]
        if self.metrics is not None:
            self.metrics.rosterLookup(hit=False)
        waiting: defer.Deferred[frozenset[str]] = defer.Deferred()
        if user in self._inFlight:
            self._inFlight[user].append(waiting)
        elif user in self._waiting:
            self._waiting[user][0].append(waiting)
        elif len(self._inFlight) < self.maxInFlight:
            self._start(user, [waiting])
        elif len(self._waiting) < self.maxWaiting:
            self._waiting[user] = ([waiting], self.clock.callLater(self.maxWait, self._gaveUp, user))
        else:
            self._busy([waiting])
        return waiting

    def _start(self, user: str, waiters: list[defer.Deferred[frozenset[str]]]) -> None:
        self._inFlight[user] = waiters
        self.fetch(user).addBoth(self._fetched, user, self.clock.seconds())

    def _gaveUp(self, user: str) -> None:
        self._busy(self._waiting.pop(user)[0])

    def _busy(self, waiters: list[defer.Deferred[frozenset[str]]]) -> None:
        self.limits.hit("roster_reads_in_flight",
                        "Refusing subscribers-only answers: {max} roster reads under way, none ended in time",
                        max=self.maxInFlight)
        for waiting in waiters:
            waiting.errback(RostersBusy())

    def _fetched(self, result: frozenset[str] | Failure, user: str, started: float) -> None:
        waiters = self._inFlight.pop(user)
        if self._waiting and len(self._inFlight) < self.maxInFlight:
            following = next(iter(self._waiting))
            queued, timer = self._waiting.pop(following)
            timer.cancel()
            self._start(following, queued)
        failed = isinstance(result, Failure)
        if self.metrics is not None:
            self.metrics.rosterFetched(self.clock.seconds() - started, ok=not failed)
        if not failed and self.ttl > 0:
            self._remember(user, result)
        for waiting in waiters:
            (waiting.errback if failed else waiting.callback)(result)

    def _remember(self, user: str, subscribers: frozenset[str]) -> None:
        now = self.clock.seconds()
        self._entries[user] = (now + self.ttl, subscribers)
        # Entries are kept in insertion order, which with one TTL is also
        # expiry order: drop expired ones and the oldest beyond the cap.
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now and len(self._entries) <= self.maxEntries:
                break
            del self._entries[oldest]

    def clear(self) -> None:
        """
        Forget every cached roster.
        """
        self._entries.clear()


class AccessPolicy:
    """
    Decides whether a requester may see a user's presence.

    @ivar public: when true anyone may; otherwise only the user themself
        and the users who have a presence subscription to them.
    @ivar readsPerClient: the roster reads each client address may cause
        per minute (L{ClientBudget}).
    """

    log = Logger()

    def __init__(self, public: bool, rosters: RosterCache, readsPerClient: int = 120) -> None:
        self.public = public
        self.rosters = rosters
        self.readsPerClient = ClientBudget(rosters.clock, readsPerClient)
        self.refusals = RateLimitedLog(self.log, rosters.clock)

    def mayView(self, user: str, requester: str | None, client: str | None = None) -> bool | defer.Deferred[bool]:
        """
        Whether C{requester} may see C{user}'s presence: at once when the
        answer needs no roster or the roster is cached, else a Deferred.

        Both are normalised bare JIDs; C{user} is on the served domain.
        A roster that cannot be read means no.  A C{client} that has
        caused as many roster reads as it may this minute is refused
        whenever the answer depends on a roster, cached or not, so that
        the refusal tells nothing of the user asked for.

        @param client: the HTTP client's address; C{None}: not counted.
        @raise RosterReadsSpent: C{client} may cause no more roster reads
            for now.
        """
        if self.public or requester == user:
            return True
        if requester is None:
            return False
        if client is not None:
            retryAfter = self.readsPerClient.retryAfter(client)
            if retryAfter is not None:
                self.rosters.limits.hit(
                    "roster_reads_per_client",
                    "Refusing subscribers-only requests from a client that caused {allowance} roster reads "
                    "within a minute", allowance=self.readsPerClient.allowance)
                raise RosterReadsSpent(retryAfter)
        subscribers = self.rosters.subscribers(user)
        if isinstance(subscribers, frozenset):
            return requester in subscribers
        if client is not None:
            self.readsPerClient.spend(client)
        subscribers.addCallbacks(lambda found: requester in found, self._refuse, errbackArgs=(user,))
        return subscribers

    def _refuse(self, failure, user: str) -> bool:
        if not failure.check(RostersBusy):
            self.refusals.warn(
                "Refusing a subscribers-only request for {user}: roster unavailable ({why})",
                user=user, why=failure.getErrorMessage(),
            )
        return False
