"""
The reliability scenarios of C{scripts/chaos} in their short sizes, against
a real Prosody and the real C{twistd -n presenced} on this interpreter:
each test asserts the criteria its scenario's figures must meet.
"""

from __future__ import annotations

import platform

import pytest_twisted
from twisted.internet import reactor

from bench.chaos import clients, enumeration, faults, fuzz, memory, reloads, stanzas
from bench.chaos.harness import Figures, Harness


@pytest_twisted.async_yield_fixture(scope="module")
async def harness():
    h = Harness(reactor, "pypy" if platform.python_implementation() == "PyPy" else "cpython")
    await h.start()
    yield h
    await h.stop()


def assertMet(figures: Figures) -> None:
    """
    Every criterion of C{figures} is met but time limits, which
    C{scripts/chaos} judges: a test does not depend on the machine's speed.
    """
    failed = [f for f in figures.failed if not f.timed]
    assert not failed, "\n".join(f"{f.name}: {f.value!r}, wanted {f.criterion}" for f in failed)


@pytest_twisted.ensureDeferred
async def test_fuzzedRequestsGetNoServerErrorAndLeaveTheDaemonAnswering(harness):
    """
    Generated hostile requests get no 5xx answer and log no traceback;
    health and a known user's answer are right afterwards.
    """
    figures = await fuzz.run(harness, full=False)
    assertMet(figures)
    assert figures["5xx answers"] == 0
    assert sum(figures["answers by status"].values()) >= fuzz.SHORT_CASES
    assert figures["alice's text afterwards"] == "Chaos baseline"


@pytest_twisted.ensureDeferred
async def test_hostileStanzasNeitherDropTheLinkNorBreakTheAnswers(harness):
    """
    Hostile presences from real users through Prosody, and one user with
    many resources, leave presenced's link up and every answer
    well-formed; the ordinary presence after them is shown.
    """
    figures = await stanzas.run(harness, full=False)
    assertMet(figures)
    assert figures["link drops (logins of presenced's link)"] == 0
    assert figures["malformed or failed answers"] == 0
    assert figures["presence stanzas presenced received"] > 0
    assert figures["ordinary presence shown"] is True


@pytest_twisted.ensureDeferred
async def test_reloadStormKeepsTheLinkAndEndsWithTheLastGoodSettings(harness):
    """
    SIGHUPs alternating a good and a broken file, under load, fail no
    request, never log the link in again, and leave the last good file's
    settings in force.
    """
    figures = await reloads.run(harness, full=False)
    assertMet(figures)
    assert figures["failed requests (connection errors, 5xx)"] == 0
    assert figures["XMPP logins of presenced's link"] == 0
    assert figures["final label in force"] == reloads.label(reloads.SHORT_SIGNALS // 2)


@pytest_twisted.ensureDeferred
async def test_prosodyKilledUnderLoadFailsNoRequestAndComesBack(harness):
    """
    Prosody killed with SIGKILL and started again under load: no request
    fails, after each kill nobody is shown online, and after each restart
    health is 200 and the answers are right again.
    """
    figures = await faults.run(harness, full=False)
    assertMet(figures)
    assert figures["failed requests (connection errors, 5xx)"] == 0
    assert figures["kills after which nobody was shown online"] == faults.SHORT_KILLS
    assert figures["restarts after which the answers were right"] == faults.SHORT_KILLS
    assert figures["links set up again (logins of presenced's link)"] == faults.SHORT_KILLS


@pytest_twisted.ensureDeferred
async def test_halfRequestsAreClosedAtTheTimeoutAndAGreedyAddressIsCappedWhileOthersAreAnswered(harness):
    """
    A thousand half requests are all closed and counted as
    request_timeout; of one address's flood of connections exactly
    max_connections_per_client stay open and the rest are closed at once;
    a client on another address gets every answer meanwhile.
    """
    figures = await clients.run(harness, full=False)
    assertMet(figures)
    assert figures["half requests closed by presenced"] == clients.SLOW
    assert figures["counted as request_timeout"] == clients.SLOW
    assert figures["greedy connections kept open"] == clients.PER_CLIENT
    assert figures["greedy connections closed at once"] > 0
    assert figures["well-behaved requests failed or not 200"] == 0
    assert sum(figures["answers by status"].values()) > 0


@pytest_twisted.ensureDeferred
async def test_floodOfRandomJIDsReadsRostersWithinTheAllowanceAndTellsNoUserFromAnother(harness):
    """
    Subscribers-only requests for random JIDs from one address make
    presenced read no more rosters than that address's allowance; an
    existing and a non-existing user get the same answers before the
    allowance is spent and after.
    """
    figures = await enumeration.run(harness, full=False)
    assertMet(figures)
    assert figures["roster reads presenced made (fetch count)"] <= enumeration.ALLOWANCE + enumeration.IN_FLIGHT
    assert figures["answers by status"][429] > 0
    assert figures["before the flood: answers that differ between the users"] == 0
    assert figures["after the flood: answers that differ between the users"] == 0
    assert figures["before the flood: statuses of both users' answers"] == [200]
    assert figures["after the flood: statuses of both users' answers"] == [429]


@pytest_twisted.ensureDeferred
async def test_manyJIDsAndAChurningCrowdKeepMemoryUnderItsBoundAndTheAnswersRight(harness):
    """
    A crowd of users going offline and online, through Prosody, while
    thousands of distinct JIDs are asked about: no request fails, the RSS
    stays under its bound, the crowd's second coming reuses the memory of
    the first, and every sampled user's answer is their last status.
    """
    figures = await memory.run(harness, full=False)
    assertMet(figures)
    assert figures["crowd users"] == memory.SHORT_USERS
    assert figures["distinct JIDs asked about"] == memory.SHORT_JIDS
    assert figures["answers by status"] == {200: memory.SHORT_JIDS}
    assert figures["rounds of the whole crowd offline and back meanwhile"] >= 1
    assert figures["users (of 20) whose text after the churn is not their last status"] == 0
