"""
Scenario 3, server faults under load: Prosody killed with SIGKILL and
started again, again and again, while a load client asks presenced
continuously.

No request may fail (a connection error or a 5xx); within 1 s of each
kill no user may be shown online; within 5 s of each restart health must
be 200 and the answers right (alice logs in again as her client would).
"""

from __future__ import annotations

import random
import time

from twisted.internet import threads

from bench.chaos.harness import BASELINE_STATUS, Figures, Harness

NUMBER = 3
TITLE = "server faults under load"

FULL_KILLS, SHORT_KILLS = 10, 2
#: The longest Prosody stays down after a kill (each time a time drawn
#: from the seed up to it), so that presenced's reconnection meets a
#: refused connection as well as a server that is back; and, in the full
#: run, one longer outage, measured without a limit: presenced's retries
#: grow apart (1, 2.7, 7.4 s...), so it comes back later after a longer
#: outage.
MOST_DOWN, LONG_OUTAGE = 2.0, 10.0
#: The seconds after a kill within which nobody may be shown online, and
#: after a restart within which health and the answers must be right.
OFFLINE_WITHIN, BACK_WITHIN = 1.0, 5.0
#: How long to watch for each, at most: longer than the limits, to measure
#: how far over them it went.
WATCH = 20.0
ONLINE = ("available", "chat", "away", "xa", "dnd")


def anyoneShownOnline(harness: Harness) -> bool:
    """
    Whether alice is shown online, or health counts anyone online (or
    either cannot be told).
    """
    answer = harness.json(harness.alice)
    return answer is None or answer["state"] in ONLINE or harness.usersOnline() != 0


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def back(harness: Harness) -> bool:
    return harness.text(harness.alice) == BASELINE_STATUS


async def run(harness: Harness, full: bool) -> Figures:
    """
    Kill and restart Prosody L{FULL_KILLS} times under load, timing when
    presenced shows alice offline, when health is 200 again and when she
    is shown again.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited = harness.limited()
    kills = FULL_KILLS if full else SHORT_KILLS
    domain = harness.prosody.domain
    targets = [harness.statusTarget(harness.alice, kind) for kind in ("text", "json", "xml", "image")]
    targets += [harness.statusTarget(f"nobody@{domain}"), f"/plugins/presence/statuses?jid={harness.alice}&jid=x@{domain}"]
    logins, tracebacks = harness.logins(), harness.tracebacks()
    offline: list[float | None] = []
    healthy: list[float | None] = []
    right: list[float | None] = []
    restarts: list[float] = []
    await harness.until(lambda: back(harness), 10, "alice shown before the first kill")
    downtimes = [round(random.Random(harness.seed + n).uniform(0, MOST_DOWN), 2) for n in range(kills)]

    async def outage(down: float) -> tuple[float | None, float, float | None, float | None]:
        """
        Kill Prosody, keep it down for C{down} seconds (at least until
        nobody is shown online, or L{WATCH} passes), start it again and
        log alice in; returns the seconds to nobody shown online after the
        kill, Prosody's start, and the seconds to health 200 and to the
        right answers after it.
        """
        harness.prosody.kill()
        killed = time.monotonic()
        seen = await harness.within(lambda: not anyoneShownOnline(harness), WATCH, interval=0.01)
        gone = None if seen is None else time.monotonic() - killed
        await harness.sleep(max(0.0, killed + down - time.monotonic()))
        started = time.monotonic()
        await threads.deferToThread(harness.prosody.start)
        restarted = time.monotonic()
        await harness.aliceOnline()
        seen = await harness.within(lambda: harness.health() == 200, WATCH, interval=0.02)
        healthy = None if seen is None else time.monotonic() - restarted
        seen = await harness.within(lambda: back(harness), WATCH, interval=0.02)
        right = None if seen is None else time.monotonic() - restarted
        return gone, restarted - started, healthy, right

    load = harness.load(targets, seconds=kills * (2 * WATCH + 30), requests=10_000_000).start()
    try:
        for n, down in enumerate(downtimes):
            await harness.sleep(0.5)
            gone, start, healthyAfter, rightAfter = await outage(down)
            offline.append(gone)
            restarts.append(start)
            healthy.append(healthyAfter)
            right.append(rightAfter)
            harness.say(f"kill {n + 1}: nobody online after {seconds(offline[-1])}, health 200 after "
                        f"{seconds(healthy[-1])}, the answers right after {seconds(right[-1])}")
        if full:
            await harness.sleep(0.5)
            _, _, longHealthy, longRight = await outage(LONG_OUTAGE)
    finally:
        load.stop()

    def worst(values: list[float | None]) -> float:
        return round(max(WATCH if v is None else v for v in values), 2)

    figures.add("kills (SIGKILL) and restarts", kills)
    load.addFigures(figures, "during the kills", harness.limited() - limited)
    figures.add("seconds to show nobody online, each kill", [round(v, 3) if v is not None else "never" for v in offline])
    figures.within("seconds to show nobody online after a kill, worst", worst(offline), OFFLINE_WITHIN)
    figures.expect("kills after which nobody was shown online", sum(v is not None for v in offline), kills)
    figures.expect("restarts after which health was 200", sum(v is not None for v in healthy), kills)
    figures.expect("restarts after which the answers were right", sum(v is not None for v in right), kills)
    figures.add("seconds Prosody stayed down, each kill", downtimes)
    figures.add("seconds Prosody took to restart, worst", round(max(restarts), 2))
    figures.add("seconds to health 200 after a restart, each", [round(v, 2) if v is not None else "never" for v in healthy])
    figures.within("seconds to health 200 after a restart, worst", worst(healthy), BACK_WITHIN)
    figures.within("seconds to the right answers after a restart, worst", worst(right), BACK_WITHIN)
    if full:
        figures.add(f"after one {LONG_OUTAGE:.0f} s outage: seconds to health 200, to the right answers",
                    [seconds(longHealthy), seconds(longRight)])
    figures.expect("links set up again (logins of presenced's link)", harness.logins() - logins,
                   kills + (1 if full else 0))
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacks, 0)
    figures.expect("daemon running", harness.running(), True)
    return figures
