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

from bench.chaos import clients, enumeration, faults, fuzz, memory, reloads, stanzas

#: Every scenario, in the order they run: Prosody is killed last, so that
#: the others meet a link that never failed.
SCENARIOS = [fuzz, stanzas, reloads, clients, enumeration, memory, faults]
