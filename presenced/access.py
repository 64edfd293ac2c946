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

from presenced.ratelimit import RateLimitedLog

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

    def mayView(self, user: str, requester: str | None) -> bool | defer.Deferred[bool]:
        """
        Whether C{requester} may see C{user}'s presence: at once, or later.
        """


class RosterCache:
    """
    The presence subscribers of users, fetched on demand and kept for a
    while.

    The server does not tell the component when a roster changes, so an
    entry is trusted for C{ttl} seconds only.  Concurrent questions about
    the same user share one fetch.  Failed fetches are not cached.  At
    most L{maxEntries} rosters are kept, the oldest dropped first.

    @ivar metrics: told of every lookup and fetch; C{None}: nothing is.
    """

    maxEntries = 10_000
    metrics: Metrics | None = None

    def __init__(self, fetch: SubscriberSource, clock: IReactorTime, ttl: float) -> None:
        self.fetch = fetch
        self.clock = clock
        self.ttl = ttl
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}
        self._inFlight: dict[str, list[defer.Deferred[frozenset[str]]]] = {}

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
            return waiting
        self._inFlight[user] = [waiting]
        started = self.clock.seconds()
        self.fetch(user).addBoth(self._fetched, user, started)
        return waiting

    def _fetched(self, result: frozenset[str] | Failure, user: str, started: float) -> None:
        waiters = self._inFlight.pop(user)
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
    """

    log = Logger()

    def __init__(self, public: bool, rosters: RosterCache) -> None:
        self.public = public
        self.rosters = rosters
        self.refusals = RateLimitedLog(self.log, rosters.clock)

    def mayView(self, user: str, requester: str | None) -> bool | defer.Deferred[bool]:
        """
        Whether C{requester} may see C{user}'s presence: at once when the
        answer needs no roster or the roster is cached, else a Deferred.

        Both are normalised bare JIDs; C{user} is on the served domain.
        Never fails: a roster that cannot be read means no.
        """
        if self.public or requester == user:
            return True
        if requester is None:
            return False
        subscribers = self.rosters.subscribers(user)
        if isinstance(subscribers, frozenset):
            return requester in subscribers
        subscribers.addCallbacks(lambda found: requester in found, self._refuse, errbackArgs=(user,))
        return subscribers

    def _refuse(self, failure, user: str) -> bool:
        self.refusals.warn(
            "Refusing a subscribers-only request for {user}: roster unavailable ({why})",
            user=user, why=failure.getErrorMessage(),
        )
        return False
