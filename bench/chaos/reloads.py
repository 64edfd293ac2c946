"""
Scenario 4, reload storm: SIGHUPs to twistd under load, alternating a good
settings file (each with its own label for away) and a broken one.

No request may fail, the XMPP link must stay up without logging in again,
each good file's label must be in force once it is loaded and stay so
through the broken one after it, and the last good file's is in force at
the end.
"""

from __future__ import annotations

from twisted.internet import threads

from bench.chaos.harness import Figures, Harness

NUMBER = 4
TITLE = "reload storm"

FULL_SIGNALS, SHORT_SIGNALS = 100, 6

#: What turns a good file into a broken one: a value of the wrong kind and
#: a section presenced does not know.
BREAKAGE = "public = perhaps\n[surprise]\nkey = value\n"


def label(number: int) -> str:
    return f"Away, reload {number}"


def awayLabel(harness: Harness) -> str | None:
    answer = harness.json(harness.alice)
    return None if answer is None else answer["label"]


async def run(harness: Harness, full: bool) -> Figures:
    """
    Send L{FULL_SIGNALS} SIGHUPs, each after writing the next file, waiting
    for each reload to be done or aborted; check alice's label after each.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited = harness.limited()
    signals = FULL_SIGNALS if full else SHORT_SIGNALS
    logins, tracebacks = harness.logins(), harness.tracebacks()
    reconnects = harness.metric("presenced_xmpp_reconnects_total")
    targets = [harness.statusTarget(harness.alice, kind) for kind in ("json", "text", "image", "svg")]
    outcomes = {"done": 0, "aborted": 0}
    wrong: list[str] = []
    expected = None

    load = harness.load(targets, seconds=signals * 20 + 30, requests=10_000_000).start()
    try:
        for n in range(signals):
            good = n % 2 == 0
            if good:
                expected = label(n // 2 + 1)
                harness.writeSettings(f"away_status = {expected}")
            else:
                harness.writeSettings(f"away_status = {label(n)} (never in force)\n{BREAKAGE}")
            outcomes[await harness.reload()] += 1
            shown = await threads.deferToThread(awayLabel, harness)
            if shown != expected:
                wrong.append(f"after SIGHUP {n + 1} ({'good' if good else 'broken'}): {shown!r}, not {expected!r}")
    finally:
        load.stop()

    figures.add("SIGHUPs", signals)
    figures.expect("reloads done (good files)", outcomes["done"], (signals + 1) // 2)
    figures.expect("reloads aborted (broken files)", outcomes["aborted"], signals // 2)
    load.addFigures(figures, "during the storm", harness.limited() - limited)
    figures.expect("XMPP logins of presenced's link", harness.logins() - logins, 0)
    figures.expect("link reconnects (metric)", int(harness.metric("presenced_xmpp_reconnects_total") - reconnects), 0)
    figures.expect("answers with settings not in force after a reload", len(wrong), 0)
    figures.expect("final label in force", await threads.deferToThread(awayLabel, harness), expected)
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacks, 0)
    figures.expect("daemon running", harness.running(), True)
    figures.notes.extend(wrong[:5])

    harness.writeSettings()
    await harness.reload()
    return figures
