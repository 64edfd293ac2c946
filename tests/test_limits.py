"""
Tests for presenced's limits against abuse: roster reads in flight and per
client (L{presenced.access}), connections and request timeouts
(L{presenced.connections}), resources per user, and how every limit is
counted and logged (L{presenced.ratelimit}).
"""

import pytest
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs

from presenced.access import AccessPolicy, RosterCache, RostersBusy, RosterReadsSpent
from presenced.config import fromString
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.ratelimit import ClientBudget, Limits

from test_web import IMAGES, STATUS, Fixture
from webhelpers import Connection, request


class Fetches:
    def __init__(self):
        self.pending = {}

    def __call__(self, user):
        self.pending[user] = defer.Deferred()
        return self.pending[user]


class CountedLimits(Limits):
    """
    Limits whose hits are kept by name, as the metrics count them.
    """

    def __init__(self, clock):
        super().__init__(clock)
        self.hits = []
        self.counted = self.hits.append


def cache(maxInFlight=2):
    clock, fetches = task.Clock(), Fetches()
    limits = CountedLimits(clock)
    return RosterCache(fetches, clock, ttl=100, maxInFlight=maxInFlight, limits=limits), fetches, clock, limits


def test_rosterReadsBeyondTheCapWaitTheirTurn():
    """
    Beyond C{maxInFlight} reads under way, a roster is read only when one
    of them ends, and its readers get it then.
    """
    rosters, fetches, clock, limits = cache(maxInFlight=2)
    rosters.subscribers("a@x.test")
    rosters.subscribers("b@x.test")
    third = []
    rosters.subscribers("c@x.test").addCallback(third.append)
    assert set(fetches.pending) == {"a@x.test", "b@x.test"}
    fetches.pending["a@x.test"].callback(frozenset())
    assert set(fetches.pending) == {"a@x.test", "b@x.test", "c@x.test"}
    fetches.pending["c@x.test"].callback(frozenset({"d@x.test"}))
    assert third == [frozenset({"d@x.test"})]
    assert limits.hits == []


def test_rosterReadsThatWaitTooLongAreRefused():
    """
    A read that found no room within C{maxWait} seconds fails its readers
    with L{RostersBusy}, is counted, and is never started.
    """
    rosters, fetches, clock, limits = cache(maxInFlight=1)
    rosters.subscribers("a@x.test")
    failures = []
    rosters.subscribers("b@x.test").addErrback(failures.append)
    rosters.subscribers("b@x.test").addErrback(failures.append)
    clock.advance(rosters.maxWait)
    assert [f.type for f in failures] == [RostersBusy, RostersBusy]
    assert limits.hits == ["roster_reads_in_flight"]
    fetches.pending["a@x.test"].callback(frozenset())
    assert set(fetches.pending) == {"a@x.test"}


def test_rosterReadsBeyondTheQueueAreRefusedAtOnce():
    """
    When C{maxWaiting} users already wait, another is refused at once.
    """
    rosters, fetches, clock, limits = cache(maxInFlight=1)
    rosters.maxWaiting = 1
    rosters.subscribers("a@x.test")
    rosters.subscribers("b@x.test")
    failures = []
    rosters.subscribers("c@x.test").addErrback(failures.append)
    assert [f.type for f in failures] == [RostersBusy]
    assert limits.hits == ["roster_reads_in_flight"]


def test_busyRostersMeanNo():
    """
    The policy refuses, without a failure, a requester whose answer needs
    a roster that could not be read for lack of room.
    """
    rosters, fetches, clock, limits = cache(maxInFlight=1)
    policy = AccessPolicy(False, rosters)
    policy.mayView("a@x.test", "b@x.test")
    answers = []
    policy.mayView("c@x.test", "b@x.test").addCallback(answers.append)
    clock.advance(rosters.maxWait)
    assert answers == [False]


def test_userWithoutSubscribersIsCachedToo():
    """
    A roster with no subscriber is kept like any other: asking again reads
    nothing.
    """
    rosters, fetches, clock, limits = cache()
    policy = AccessPolicy(False, rosters)
    answers = []
    policy.mayView("a@x.test", "b@x.test").addCallback(answers.append)
    fetches.pending.pop("a@x.test").callback(frozenset())
    assert policy.mayView("a@x.test", "b@x.test") is False
    assert answers == [False] and fetches.pending == {}


def test_clientsMayCauseSoManyRosterReadsAMinute():
    """
    A client that caused C{readsPerClient} reads in a minute is refused
    for every answer that depends on a roster, cached or not, until the
    minute is over; other clients are not.
    """
    rosters, fetches, clock, limits = cache(maxInFlight=10)
    policy = AccessPolicy(False, rosters, readsPerClient=2)
    policy.mayView("a@x.test", "r@x.test", "192.0.2.1")
    fetches.pending["a@x.test"].callback(frozenset())
    clock.advance(20)
    policy.mayView("b@x.test", "r@x.test", "192.0.2.1")
    with pytest.raises(RosterReadsSpent) as refused:
        policy.mayView("a@x.test", "r@x.test", "192.0.2.1")
    assert refused.value.retryAfter == 40
    assert limits.hits == ["roster_reads_per_client"]
    assert policy.mayView("a@x.test", "r@x.test", "192.0.2.2") is False
    assert policy.mayView("a@x.test", "a@x.test", "192.0.2.1") is True
    clock.advance(40)
    assert policy.mayView("a@x.test", "r@x.test", "192.0.2.1") is False


def test_cachedAnswersCostNothing():
    """
    Answers from cached rosters do not count against the client.
    """
    rosters, fetches, clock, limits = cache()
    policy = AccessPolicy(False, rosters, readsPerClient=1)
    policy.mayView("a@x.test", "r@x.test", "192.0.2.1")
    fetches.pending["a@x.test"].callback(frozenset())
    clock.advance(1)
    with pytest.raises(RosterReadsSpent):
        policy.mayView("a@x.test", "r@x.test", "192.0.2.1")
    policy = AccessPolicy(False, rosters, readsPerClient=2)
    policy.mayView("b@x.test", "r@x.test", "192.0.2.1")
    for _ in range(5):
        assert policy.mayView("a@x.test", "r@x.test", "192.0.2.1") is False


def test_budgetForgetsTheOldestClientsBeyondItsCap():
    """
    At most C{maxClients} addresses are tracked.
    """
    budget = ClientBudget(task.Clock(), allowance=1, maxClients=2)
    for client in ("a", "b", "c"):
        budget.spend(client)
    assert budget.retryAfter("a") is None
    assert budget.retryAfter("b") == 60 and budget.retryAfter("c") == 60


def test_tooManyRosterReadsGetA429ThatTellsNothing():
    """
    Over HTTP, a client over its allowance gets 429 with Retry-After, and
    the same answer whether the user asked for exists, is cached, or not.
    """
    fixture = Fixture(public=False)
    fixture.policy.readsPerClient.allowance = 1
    fixture.online("alice@example.test")
    Connection(fixture.site).send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&type=text")
    fixture.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    answers = [fixture.get(f"jid={user}@example.test&req_jid=bob@example.test&type=text")
               for user in ("alice", "nobody")]
    assert [a.code for a in answers] == [429, 429]
    assert answers[0].headers["retry-after"] == "60"
    assert answers[0].headers == answers[1].headers and answers[0].body == answers[1].body
    batch = request(fixture.site, "GET", "/plugins/presence/statuses?jid=alice@example.test&jid=nobody@example.test"
                                         "&req_jid=bob@example.test")
    assert batch.code == 429 and batch.body == answers[0].body


def test_limitsAreCountedEachTimeAndLoggedOnceAMinute():
    """
    Every hit is counted; each kind of line is logged at most once a
    minute, the next one saying how many were left out.
    """
    clock = task.Clock()
    limits = CountedLimits(clock)
    with capturedLogs() as events:
        for _ in range(3):
            limits.hit("max_connections", "Closing connections: {max} open", max=5)
        clock.advance(60)
        limits.hit("max_connections", "Closing connections: {max} open", max=5)
    assert limits.hits == ["max_connections"] * 4
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 2 and warnings[1]["suppressed"] == 2
    assert warnings[0]["limit"] == "max_connections"


def test_oldestResourceDroppedBeyondTheCapIsCounted():
    """
    A user's resources beyond C{maxResources} push out the oldest one,
    and the limit is told each time.
    """
    limits = CountedLimits(task.Clock())
    tracker = PresenceTracker(maxResources=2, limits=limits)
    for n in range(4):
        tracker.available("a@x.test", ResourcePresence(resource=f"r{n}", state=State.AVAILABLE, received=n))
    assert tracker.resourceCount() == 2
    assert limits.hits == ["max_resources", "max_resources"]


def test_limitSettings():
    """
    The limits are settings, with their defaults, and wrong values are
    refused.
    """
    base = "[xmpp]\ndomain = example.test\njid = presence.example.test\nsecret = s\n[http]\n"
    defaults = fromString(base)
    assert (defaults.http.request_timeout, defaults.http.max_connections,
            defaults.http.max_connections_per_client) == (15.0, 20_000, 256)
    assert (defaults.presence.roster_reads_in_flight, defaults.presence.roster_reads_per_client,
            defaults.presence.max_resources) == (64, 120, 32)
    chosen = fromString(base + "request_timeout = 3\nmax_connections = 10\nmax_connections_per_client = 2\n"
                        "[presence]\nroster_reads_in_flight = 4\nroster_reads_per_client = 5\nmax_resources = 6\n")
    assert (chosen.http.request_timeout, chosen.http.max_connections, chosen.http.max_connections_per_client,
            chosen.presence.roster_reads_in_flight, chosen.presence.roster_reads_per_client,
            chosen.presence.max_resources) == (3.0, 10, 2, 4, 5, 6)
    with pytest.raises(Exception) as wrong:
        fromString(base + "request_timeout = 0\nmax_connections = many\n[presence]\nmax_resources = -1\n")
    problems = "\n".join(wrong.value.problems)
    assert "request_timeout" in problems and "max_connections" in problems and "max_resources" in problems


def connections(site, count, peer="192.0.2.1"):
    return [Connection(site, peer) for _ in range(count)]


def test_connectionsPerClientAreCapped():
    """
    Beyond C{maxPerClient} open connections from one address, new ones
    from it are closed at once and counted; others still connect, and it
    may connect again once one of its connections closed.
    """
    fixture = Fixture()
    fixture.site.limits = fixture.site.connections.limits = CountedLimits(fixture.clock)
    fixture.site.connections.maxPerClient = 2
    opened = connections(fixture.site, 3)
    assert [c.transport.disconnecting for c in opened] == [False, False, True]
    assert fixture.site.connections.limits.hits == ["max_connections_per_client"]
    assert not Connection(fixture.site, "192.0.2.2").transport.disconnecting
    opened[0].close()
    assert not Connection(fixture.site, "192.0.2.1").transport.disconnecting


def test_connectionsInAllAreCapped():
    """
    Beyond C{maxConnections} open connections, any new one is closed at
    once, whoever opens it.
    """
    fixture = Fixture()
    fixture.site.connections.maxConnections = 2
    opened = [Connection(fixture.site, f"192.0.2.{n}") for n in range(3)]
    assert [c.transport.disconnecting for c in opened] == [False, False, True]
    opened[2].close()
    opened[1].close()
    assert not Connection(fixture.site, "192.0.2.9").transport.disconnecting


def test_trustedProxiesAreNotCappedAsOneClient():
    """
    A trusted reverse proxy carries every client: its connections count
    in all only.
    """
    fixture = Fixture()
    settings = fromString("[xmpp]\ndomain = example.test\njid = p.example.test\nsecret = s\n[http]\n"
                          "trusted_proxies = 192.0.2.0/24\nmax_connections_per_client = 2\n")
    fixture.site.reconfig(settings, IMAGES)
    assert not any(c.transport.disconnecting for c in connections(fixture.site, 5))
    assert [c.transport.disconnecting for c in connections(fixture.site, 3, "198.51.100.1")] == [False, False, True]


def test_halfSentRequestIsClosedAtTheTimeout():
    """
    A request that has not arrived whole C{request_timeout} seconds after
    its first byte is closed, however slowly its bytes keep coming.
    """
    fixture = Fixture()
    fixture.site.timeOut = 15
    fixture.site.limits = CountedLimits(fixture.clock)
    slow = Connection(fixture.site)
    for part in (b"GET /plugins/presence/status?jid=a@example.test HTTP/1.1\r\n", b"Host: x\r\n", b"X: y\r\n"):
        slow.channel.dataReceived(part)
        fixture.clock.advance(4)
        assert not slow.transport.disconnecting
    slow.channel.dataReceived(b"X-More: z\r\n")
    fixture.clock.advance(2.9)
    assert not slow.transport.disconnecting
    fixture.clock.advance(0.1)
    assert slow.transport.disconnecting
    assert fixture.site.limits.hits == ["request_timeout"]


def test_idleConnectionIsClosedAtTheTimeout():
    """
    A connection that sends nothing is closed after C{request_timeout}.
    """
    fixture = Fixture()
    fixture.site.reconfig(fromString("[xmpp]\ndomain = example.test\njid = p.example.test\nsecret = s\n"
                                     "[http]\nrequest_timeout = 4\n[presence]\npublic = true\n"), IMAGES)
    idle = Connection(fixture.site)
    fixture.clock.advance(3.9)
    assert not idle.transport.disconnecting
    fixture.clock.advance(0.2)
    assert idle.transport.disconnecting


def test_answersBeingWrittenAreNotTimedOut():
    """
    A request received whole, whose answer is not done yet (as an event
    stream's never is), is not cut by the timeout.
    """
    fixture = Fixture(public=False)
    fixture.site.timeOut = 15
    waiting = Connection(fixture.site)
    waiting.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&type=text")
    fixture.clock.advance(60)
    assert not waiting.transport.disconnecting
    fixture.fetches["alice@example.test"].callback(frozenset({"bob@example.test"}))
    assert waiting.response().code == 200


def test_wholeRequestsCostNoDeadline():
    """
    A request that arrives whole in one read sets no deadline of its own
    (the idle timeout is twisted.web's); one that arrives in parts does.
    """
    fixture = Fixture()
    fixture.site.timeOut = 15
    connection = Connection(fixture.site)

    def deadlines():
        return [call for call in fixture.clock.getDelayedCalls() if "_tooSlow" in repr(call.func)]

    connection.send("GET", f"{STATUS}?jid=a@example.test&type=text")
    assert connection.response().code == 200 and deadlines() == []
    connection.channel.dataReceived(b"GET / HTTP/1.1\r\n")
    assert len(deadlines()) == 1


def test_halfSentRequestIsCountedWhicheverTimerFiresFirst():
    """
    A request stopped half-way is closed by twisted.web's idle timeout as
    soon as by the deadline: it is counted once either way.
    """
    fixture = Fixture()
    fixture.site.timeOut = 15
    fixture.site.limits = CountedLimits(fixture.clock)
    stopped = Connection(fixture.site)
    stopped.channel.dataReceived(b"GET /plugins/presence/status HTTP/1.1\r\n")
    stopped.channel.timeoutConnection()
    assert stopped.transport.disconnecting
    assert fixture.site.limits.hits == ["request_timeout"]
    assert not [call for call in fixture.clock.getDelayedCalls() if "_tooSlow" in repr(call.func)]
