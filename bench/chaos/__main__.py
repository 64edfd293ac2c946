"""
Run the reliability scenarios against presenced on each interpreter, print
their figures and write RELIABILITY.md; with C{--only}, the sections of
the other scenarios are kept from the file as it was.

    scripts/chaos [--short] [--only N ...] [--seed N] [--interpreters cpython pypy]
                  [--output RELIABILITY.md]

Exits 1 when a criterion is not met.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import defer, task

from bench.chaos import SCENARIOS
from bench.chaos.harness import Figures, Harness
from bench.chaos.report import earlier, markdown, passed, table
from bench.run import RUNTIMES, machine

ROOT = Path(__file__).resolve().parents[2]


async def runScenarios(reactor, interpreter: str, scenarios: list, full: bool, seed: int) -> list[Figures]:
    """
    Run C{scenarios} one after the other against one harness on
    C{interpreter}.
    """
    say = lambda line: print(f"chaos [{interpreter}] {line}", file=sys.stderr, flush=True)  # noqa: E731
    harness = Harness(reactor, interpreter, say, seed)
    # Interrupted, the reactor stops without running what follows.
    trigger = reactor.addSystemEventTrigger("before", "shutdown", harness.end)
    results = []
    try:
        say("starting Prosody and presenced")
        await harness.start()
        for scenario in scenarios:
            say(f"{scenario.NUMBER}. {scenario.TITLE} ({'full' if full else 'short'})")
            started = time.monotonic()
            figures = await scenario.run(harness, full)
            figures.seconds = time.monotonic() - started
            results.append(figures)
            say(f"{scenario.NUMBER}. done in {figures.seconds:.0f} s" +
                ("" if not figures.failed else f"; NOT MET: {', '.join(f.name for f in figures.failed)}"))
    finally:
        reactor.removeSystemEventTrigger(trigger)
        await harness.stop()
    return results


def main() -> None:
    available = [name for name, runtime in RUNTIMES.items() if Path(runtime.executable("twistd")).exists()]
    numbers = [scenario.NUMBER for scenario in SCENARIOS]
    parser = argparse.ArgumentParser(description="Measure presenced's reliability under faults and hostile input.")
    parser.add_argument("--short", action="store_true", help="the test suite's sizes (seconds per scenario)")
    parser.add_argument("--only", type=int, nargs="+", choices=numbers, metavar="N",
                        help=f"run only these scenarios ({', '.join(map(str, numbers))})")
    parser.add_argument("--seed", type=int, default=1, help="the seed of every generated input (default 1)")
    parser.add_argument("--interpreters", nargs="+", choices=list(RUNTIMES), default=available,
                        help=f"run presenced on these (default: each whose virtualenv exists: {' '.join(available)})")
    parser.add_argument("--output", type=Path, default=ROOT / "RELIABILITY.md",
                        help="where to write the report (default RELIABILITY.md)")
    options = parser.parse_args()
    scenarios = [s for s in SCENARIOS if options.only is None or s.NUMBER in options.only]
    command = " ".join(["scripts/chaos", *sys.argv[1:]])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results: list[Figures] = []

    async def everything(reactor):
        for interpreter in options.interpreters:
            results.extend(await runScenarios(reactor, interpreter, scenarios, not options.short, options.seed))

    try:
        task.react(lambda reactor: defer.ensureDeferred(everything(reactor)))
    except SystemExit as e:
        if e.code:
            raise
    print(table(results))
    descriptions = {scenario.NUMBER: scenario.__doc__ for scenario in scenarios}
    kept = None
    if options.only is not None and options.output.exists():
        kept = earlier(options.output.read_text(encoding="utf-8"), set(options.only))
    options.output.write_text(markdown(results, machine(options.interpreters), command, date, descriptions,
                                       kept), encoding="utf-8")
    print(f"\nwritten to {options.output}")
    sys.exit(0 if passed(results) else 1)


if __name__ == "__main__":
    main()
