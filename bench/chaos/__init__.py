"""
presenced's reliability under faults and hostile input, measured against a
real Prosody and the real C{twistd -n presenced} on loopback:
C{scripts/chaos} runs the scenarios, prints their figures and writes them
to C{RELIABILITY.md}; C{tests/integration/test_chaos.py} runs a short
version of each in the test suite.

Each scenario is a module with C{NUMBER}, C{TITLE} and
C{async def run(harness, full) -> Figures} (L{bench.chaos.harness}); the
report takes any list of their figures.
"""

from __future__ import annotations

from bench.chaos import clients, enumeration, faults, fuzz, reloads, stanzas

#: Every scenario, in the order they run: Prosody is killed last, so that
#: the others meet a link that never failed.
SCENARIOS = [fuzz, stanzas, reloads, clients, enumeration, faults]

#: Scenarios to come, by number, each to be a module like the others: they
#: need limits that presenced does not have yet.
PLANNED = {
    7: "memory over time",
}
