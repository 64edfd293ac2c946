"""
The reliability scenarios of C{scripts/chaos} in their short sizes, against
a real Prosody and the real C{twistd -n presenced} on this interpreter:
each test asserts the criteria its scenario's figures must meet.
"""

from __future__ import annotations

import platform

import pytest_twisted
from twisted.internet import reactor

from bench.chaos import fuzz
from bench.chaos.harness import Figures, Harness


@pytest_twisted.async_yield_fixture(scope="module")
async def harness():
    h = Harness(reactor, "pypy" if platform.python_implementation() == "PyPy" else "cpython")
    await h.start()
    yield h
    await h.stop()


def assertMet(figures: Figures) -> None:
    assert not figures.failed, "\n".join(f"{f.name}: {f.value!r}, wanted {f.criterion}" for f in figures.failed)


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
