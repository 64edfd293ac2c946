"""
Tests for L{presenced.access}: the roster cache and the access policy.
"""

from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs

from presenced.access import AccessPolicy, RosterCache


class Fetches:
    def __init__(self):
        self.pending = {}
        self.count = 0

    def __call__(self, user):
        self.count += 1
        self.pending[user] = defer.Deferred()
        return self.pending[user]


def test_cachedRosterIsAnsweredAtOnce():
    """
    Once fetched, a roster is answered without a Deferred until it expires.
    """
    clock, fetches = task.Clock(), Fetches()
    cache = RosterCache(fetches, clock, ttl=10)
    results = []
    cache.subscribers("a@x.test").addCallback(results.append)
    fetches.pending["a@x.test"].callback(frozenset({"b@x.test"}))
    assert results == [frozenset({"b@x.test"})]
    assert cache.subscribers("a@x.test") == frozenset({"b@x.test"})
    clock.advance(10)
    assert isinstance(cache.subscribers("a@x.test"), defer.Deferred)
    assert fetches.count == 2


def test_failuresAreNotCached():
    """
    A failed fetch fails every waiter and is tried again next time.
    """
    fetches = Fetches()
    cache = RosterCache(fetches, task.Clock(), ttl=10)
    first, second = cache.subscribers("a@x.test"), cache.subscribers("a@x.test")
    failures = []
    first.addErrback(failures.append)
    second.addErrback(failures.append)
    fetches.pending["a@x.test"].errback(RuntimeError("timeout"))
    assert len(failures) == 2 and fetches.count == 1
    assert isinstance(cache.subscribers("a@x.test"), defer.Deferred)
    assert fetches.count == 2


def test_zeroTTLNeverCaches():
    """
    With a TTL of 0 every question reads the roster.
    """
    fetches = Fetches()
    cache = RosterCache(fetches, task.Clock(), ttl=0)
    cache.subscribers("a@x.test")
    fetches.pending["a@x.test"].callback(frozenset())
    assert isinstance(cache.subscribers("a@x.test"), defer.Deferred)


def test_cacheIsCapped():
    """
    Beyond maxEntries rosters, the oldest are dropped.
    """
    fetches = Fetches()
    cache = RosterCache(fetches, task.Clock(), ttl=100)
    cache.maxEntries = 3
    for n in range(5):
        cache.subscribers(f"u{n}@x.test")
        fetches.pending[f"u{n}@x.test"].callback(frozenset())
    assert cache.subscribers("u4@x.test") == frozenset()
    assert cache.subscribers("u2@x.test") == frozenset()
    assert isinstance(cache.subscribers("u1@x.test"), defer.Deferred)


def policy(public: bool = False) -> tuple[AccessPolicy, Fetches]:
    """
    An access policy whose rosters are read through the returned fetches.
    """
    fetches = Fetches()
    return AccessPolicy(public, RosterCache(fetches, task.Clock(), ttl=100)), fetches


def test_publicAllowsAnyone():
    """
    When public, anyone, even an anonymous requester, may see a user,
    without the roster being read.
    """
    public, fetches = policy(public=True)
    assert public.mayView("a@x.test", None) is True
    assert public.mayView("a@x.test", "b@x.test") is True
    assert fetches.count == 0


def test_userMaySeeThemself():
    """
    A user may see their own presence, without the roster being read.
    """
    private, fetches = policy()
    assert private.mayView("a@x.test", "a@x.test") is True
    assert fetches.count == 0


def test_anonymousRefusedWhenNotPublic():
    """
    When not public, an anonymous requester is refused at once, without
    the roster being read.
    """
    private, fetches = policy()
    assert private.mayView("a@x.test", None) is False
    assert fetches.count == 0


def test_subscriberAllowedOnceTheRosterSaysSo():
    """
    A subscriber is allowed once the user's roster, read on demand, lists
    them.
    """
    private, fetches = policy()
    answers = []
    private.mayView("a@x.test", "b@x.test").addCallback(answers.append)
    assert answers == []
    fetches.pending["a@x.test"].callback(frozenset({"b@x.test"}))
    assert answers == [True]


def test_nonSubscriberRefusedFromTheCachedRoster():
    """
    A requester the cached roster does not list is refused at once.
    """
    private, fetches = policy()
    private.mayView("a@x.test", "b@x.test")
    fetches.pending["a@x.test"].callback(frozenset({"b@x.test"}))
    assert private.mayView("a@x.test", "c@x.test") is False
    assert fetches.count == 1


def test_failedRosterReadRefuses():
    """
    A roster that cannot be read refuses the requester.
    """
    private, fetches = policy()
    answers = []
    private.mayView("a@x.test", "b@x.test").addCallback(answers.append)
    fetches.pending["a@x.test"].errback(RuntimeError("no answer"))
    assert answers == [False]


def test_refusalsWarnedAtMostOnceAMinute():
    """
    Any caller can ask while rosters cannot be read; the warning about the
    refusals is logged at most once a minute.
    """
    clock, fetches = task.Clock(), Fetches()
    policy = AccessPolicy(False, RosterCache(fetches, clock, ttl=100))
    with capturedLogs() as events:
        for number in range(20):
            policy.mayView(f"u{number}@x.test", "b@x.test")
            fetches.pending[f"u{number}@x.test"].errback(RuntimeError("no answer"))
        clock.advance(60)
        policy.mayView("a@x.test", "b@x.test")
        fetches.pending["a@x.test"].errback(RuntimeError("no answer"))
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert [e["suppressed"] for e in warnings] == [0, 19]
