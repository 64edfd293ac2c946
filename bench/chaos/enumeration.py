"""
Scenario 6, enumeration and flooding: with subscribers only, one address
(127.0.0.4) sends 100,000 requests about random JIDs of the served domain,
each claiming a requester (C{req_jid}, no signature) who is nobody's
subscriber -- what it takes to find out which users exist, or to make
presenced read a roster from the XMPP server for each request.

The roster reads presenced made (C{presenced_roster_fetch_seconds_count},
and the roster cache's misses) may not exceed C{[presence]
roster_reads_per_client} for each minute the run lasted (plus the 64 a
moment may have in flight).

Before the flood, while the address may still cause reads, and after it,
once it may not, an existing user (alice, online) and a user who does not
exist, with JIDs as long, are asked in turn: their answers must be the
same -- status, every header but C{Date}, body -- before (presenced's
forbidden answer, a 200 that says so) and after (its 429, whose
C{Retry-After} counts down the address's minute, and so is left out).
The JSON answer names the JID asked about: the user's JID is replaced in
it, and its entity tag, a digest of it, left out.  The median time of
each user's answers is reported.
"""

from __future__ import annotations

import http.client
import random
import statistics
import threading
import time
from collections import Counter
from math import ceil

from twisted.internet import threads

from bench.chaos.harness import Figures, Harness

NUMBER = 6
TITLE = "enumeration and flooding"

FULL_REQUESTS, SHORT_REQUESTS = 100_000, 2_000
SOURCE = "127.0.0.4"
WORKERS = 8
#: Each user's requests in each comparison, alternating.
COMPARED = 10
TYPES = ("text", "json", "image")
ALLOWANCE, IN_FLIGHT = 120, 64


def target(user: str, requester: str, kind: str = "text") -> str:
    return f"/plugins/presence/status?jid={user}&req_jid={requester}&type={kind}"


def ask(connection: http.client.HTTPConnection, path: str) -> tuple[float, tuple]:
    """
    Ask C{path}; returns the seconds the answer took and the answer as
    status, sorted headers but C{Date}, and body.
    """
    started = time.monotonic()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    took = time.monotonic() - started
    headers = tuple(sorted((k.lower(), v) for k, v in response.getheaders() if k.lower() != "date"))
    return took, (response.status, headers, body)


def withoutCountdown(answer: tuple) -> tuple:
    status, headers, body = answer
    return status, tuple(h for h in headers if h[0] != "retry-after"), body


def withoutJID(user: str, answer: tuple) -> tuple:
    """
    C{answer} with the JID asked about replaced, and without the entity
    tag (a digest of the body) when the body names the JID: the JSON
    answer says whom it is about.
    """
    status, headers, body = answer
    named = user.encode() in body
    return (status, tuple(h for h in headers if not (named and h[0] == "etag")),
            body.replace(user.encode(), b"{jid}"))


def compare(port: int, users: tuple[str, str], requester: str) -> dict:
    """
    Ask about each of C{users} L{COMPARED} times in turn for the text
    answer, and once for each of L{TYPES}, from L{SOURCE}; returns each
    one's answer times and answers.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(SOURCE, 0))
    times: dict[str, list[float]] = {user: [] for user in users}
    answers: dict[str, list[tuple]] = {user: [] for user in users}
    try:
        for kind in TYPES:
            for user in users:
                answers[user].append(ask(connection, target(user, requester, kind))[1])
        for _ in range(COMPARED):
            for user in users:
                took, answer = ask(connection, target(user, requester))
                times[user].append(took)
                answers[user].append(answer)
    finally:
        connection.close()
    return {"times": times, "answers": answers}


def flood(port: int, paths: list[str], seconds: float) -> dict:
    """
    Ask every one of C{paths} once from L{SOURCE}, over L{WORKERS}
    keep-alive connections, for at most C{seconds}; returns the answers
    by status, the connection errors and the seconds it took.
    """
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def worker(offset: int) -> None:
        connection = None
        for path in paths[offset::WORKERS]:
            if time.monotonic() > deadline:
                break
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(SOURCE, 0))
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses[response.status] += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors[type(e).__name__] += 1
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(seconds + 30)
    return {"statuses": statuses, "errors": errors, "seconds": time.monotonic() - started}


def reads(harness: Harness) -> tuple[int, int]:
    """
    Roster reads so far: the reads' histogram's count, and the cache's
    misses.
    """
    answer = harness.get("/plugins/presence/metrics").body.decode()
    fetched = sum(float(line.split()[-1]) for line in answer.splitlines()
                  if line.startswith("presenced_roster_fetch_seconds_count"))
    misses = harness.series("presenced_roster_cache_lookups_total", "result")["miss"]
    return int(fetched), misses


def differences(answers: dict[str, list[tuple]], users: tuple[str, str], normal=lambda answer: answer) -> list[str]:
    """
    How the two users' answers, taken in turn, differ (each as
    L{withoutJID} and C{normal} make it): one line each.
    """
    found = []
    for a, b in zip(*(answers[user] for user in users)):
        a, b = (normal(withoutJID(user, answer)) for user, answer in zip(users, (a, b)))
        if a != b:
            headers = sorted(set(a[1]) ^ set(b[1]))
            found.append(f"status {a[0]} / {b[0]}; headers differing {headers}; "
                         f"bodies {'differ' if a[2] != b[2] else 'same'}: {a[2][:60]!r} / {b[2][:60]!r}")
    return found


def median(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2) if values else 0.0


async def run(harness: Harness, full: bool) -> Figures:
    """
    Compare the two users' answers, flood, compare them again, and count
    the roster reads.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited, tracebacks = harness.limited(), harness.tracebacks()
    domain = harness.prosody.domain
    generator = random.Random(harness.seed)
    requester = f"eve@{domain}"
    # As long as alice's, so that the answers naming them are as long.
    users = (harness.alice, "".join(generator.choice("bcdfghjklmnpqrstvwxz") for _ in harness.alice.split("@")[0])
             + f"@{domain}")
    count = FULL_REQUESTS if full else SHORT_REQUESTS
    paths = [target(f"{generator.getrandbits(64):016x}@{domain}", requester) for _ in range(count)]
    harness.writeSettings(public=False)
    figures.expect("switch to subscribers only (SIGHUP)", await harness.reload(), "done")
    port = harness.presenced.port
    readsBefore, missesBefore = reads(harness)
    started = time.monotonic()

    before = await threads.deferToThread(compare, port, users, requester)
    flooded = await threads.deferToThread(flood, port, paths, 600 if full else 60)
    after = await threads.deferToThread(compare, port, users, requester)
    lasted = time.monotonic() - started
    readsAfter, missesAfter = reads(harness)
    fetched, missed = readsAfter - readsBefore, missesAfter - missesBefore
    bound = ALLOWANCE * ceil(lasted / 60) + IN_FLIGHT
    refused = harness.limited() - limited

    figures.add("requests for random JIDs", sum(flooded["statuses"].values()) + sum(flooded["errors"].values()))
    figures.add("seconds", round(flooded["seconds"], 1))
    figures.add("answers by status", dict(sorted(flooded["statuses"].items())))
    figures.expect("connection errors", dict(flooded["errors"]), {})
    figures.add("minutes the run lasted (begun)", ceil(lasted / 60))
    figures.add("roster reads presenced made (fetch count)", fetched, f"<= {bound}", fetched <= bound)
    figures.add("roster cache misses", missed, f"<= {bound}", missed <= bound)
    figures.add("refused or cut by presenced's limits", dict(sorted(refused.items())))
    for name, compared in (("before the flood", before), ("after the flood", after)):
        answers = compared["answers"]
        statuses = sorted({answer[0] for user in users for answer in answers[user]})
        figures.add(f"{name}: statuses of both users' answers", statuses)
        normal = withoutCountdown if name.startswith("after") else (lambda answer: answer)
        differ = differences(answers, users, normal)
        figures.expect(f"{name}: answers that differ between the users", len(differ), 0)
        figures.notes.extend(f"{name}: {line}" for line in differ[:3])
        figures.add(f"{name}: median answer (ms), existing, non-existing user",
                    [median(compared["times"][user]) for user in users])
        figures.add(f"{name}: difference of the medians (ms)",
                    round(median(compared["times"][users[0]]) - median(compared["times"][users[1]]), 2))
    figures.expect("before the flood: JSON answers all 200 and forbidden",
                   all(a[0] == 200 and b'"state":"forbidden"' in a[2]
                       for user in users for a in before["answers"][user] if a[2].startswith(b"{")), True)
    figures.expect("after the flood: all 429 with Retry-After",
                   all(a[0] == 429 and any(h[0] == "retry-after" for h in a[1])
                       for user in users for a in after["answers"][user]), True)
    figures.expect("5xx answers", sum(n for status, n in flooded["statuses"].items() if status >= 500), 0)
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacks, 0)
    figures.expect("daemon running", harness.running(), True)

    harness.writeSettings()
    await harness.reload()
    return figures
