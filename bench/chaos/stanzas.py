"""
Scenario 2, hostile stanzas: presences from real users through the real
Prosody, generated from a seeded C{random.Random} -- odd namespaces, huge
statuses, invalid show and priority, deep nesting, garbage in C{<idle/>},
C{<delay/>} and C{<x xmlns='vcard-temp:x:update'/>}, every character
class XML allows -- and one user logged in with many resources, then one
ordinary presence whose answer must be right.

presenced's XMPP link may never be set up again, every answer asked for
meanwhile must be well-formed (the XML and SVG parse, the JSON parses),
and the log may hold no traceback.  What Prosody refuses (it closes a
client's stream over 256 KiB) is counted, and the sender logs in again.

The user with many resources logs in 500 times in the full run, each
sending a small hostile presence: Prosody sends every resource's presence
to all the user's other resources, so the run's cost grows with the
square of their number (500 take about a minute here); presenced keeps
C{[presence] max_resources} of them.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from twisted.internet import threads

from bench.chaos.harness import Figures, Harness

NUMBER = 2
TITLE = "hostile stanzas"

FULL_PRESENCES, SHORT_PRESENCES = 1_500, 120
FULL_RESOURCES, SHORT_RESOURCES = 500, 20
#: Prosody's c2s_stanza_size_limit: it closes the stream of a client that
#: sends a larger stanza.
PROSODY_STANZA_LIMIT = 256 * 1024
#: Presences sent before the answers are checked again.
BATCH = 25

#: Characters of every class XML 1.0 allows: ASCII, Latin-1, other scripts,
#: right-to-left and bidi controls, combining marks, zero-width and
#: line separators, astral planes, the private use area.
CHARACTERS = ["a", "Z", "0", " ", "\t", "\n", "\r", "<", ">", "&", "'", '"', "é", "ß", "Ж", "中", "ي", "\u202e",
              "\u200f", "e\u0301", "\u200b", "\u2028", "\u2029", "\ufeff", "😀", "𝕏", "\U0010fffd", "\ue000",
              "\x85", "\xa0", "]]>", "--IMAGE--", "\\", "%s", "{0}", "${x}"]


def characters(r: random.Random, most: int) -> str:
    return "".join(r.choice(CHARACTERS) for _ in range(r.randint(0, most)))


def nested(depth: int, inner: str = "deep") -> str:
    return "<n xmlns='urn:chaos:nest'>" * depth + escape(inner) + "</n>" * depth


class Stanzas:
    """
    Makes hostile presences (XML text, as a client writes it on its
    stream) from a seeded random generator, each with the name of its kind.
    """

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.kinds = [
            (self.oddNamespaces, 10), (self.hugeStatus, 6), (self.invalidShow, 10), (self.invalidPriority, 10),
            (self.deepNesting, 8), (self.idle, 10), (self.delay, 8), (self.vcardUpdate, 10), (self.characters, 14),
            (self.manyChildren, 5), (self.oddAttributes, 9),
        ]

    def presences(self, count: int, small: bool = False):
        """
        C{count} presences, each with the name of its kind; C{small} ones
        only (no huge status, no thousands of children) if asked.
        """
        kinds = [(f, w) for f, w in self.kinds if not small or f not in (self.hugeStatus, self.manyChildren)]
        functions = [f for f, _ in kinds]
        weights = [w for _, w in kinds]
        for _ in range(count):
            kind = self.random.choices(functions, weights)[0]
            yield kind.__name__, kind()

    def status(self, most: int = 20) -> str:
        return f"<status>{escape(characters(self.random, most))}</status>"

    def oddNamespaces(self) -> str:
        r = self.random
        return r.choice([
            f"<presence><show xmlns='urn:chaos:odd'>dnd</show>{self.status()}</presence>",
            "<presence><status xmlns='jabber:server'>server namespace</status></presence>",
            "<presence><c:show xmlns:c='jabber:client'>away</c:show><c:status xmlns:c='jabber:client'>"
            "prefixed</c:status></presence>",
            f"<presence><x xmlns='{escape(characters(r, 30))}'/>{self.status()}</presence>",
            "<presence xmlns:evil='urn:chaos:evil'><evil:show>chat</evil:show><evil:priority>127</evil:priority>"
            "</presence>",
            "<presence><show xmlns=''>away</show></presence>",
            f"<presence><status xml:lang={quoteattr(characters(r, 10))}>language</status></presence>",
            "<presence><query xmlns='jabber:iq:roster'><item jid='victim@example.test' subscription='both'/>"
            "</query></presence>",
        ])

    def hugeStatus(self) -> str:
        r = self.random
        size = r.choice([1_000, 10_000, 60_000, 200_000])
        return f"<presence><show>away</show><status>{escape(r.choice(CHARACTERS)) * (size // 4)}</status></presence>"

    def invalidShow(self) -> str:
        r = self.random
        show = r.choice(["sleeping", "", "AWAY", " away", "away ", "chat dnd", "online", "unavailable",
                         "<b xmlns='urn:x'>dnd</b>", escape(characters(r, 10))])
        twice = f"<show>{r.choice(['xa', 'dnd'])}</show>" if r.random() < 0.3 else ""
        return f"<presence><show>{show}</show>{twice}{self.status()}</presence>"

    def invalidPriority(self) -> str:
        r = self.random
        priority = r.choice(["abc", "", "128", "-129", "99999999999999999999", "1e5", "0x10", " 5", "5.5", "-0",
                             "nan", "inf", escape(characters(r, 8))])
        twice = "<priority>-128</priority>" if r.random() < 0.3 else ""
        return f"<presence><priority>{priority}</priority>{twice}<show>chat</show></presence>"

    def deepNesting(self) -> str:
        depth = self.random.choice([10, 30, 31, 32, 33, 64, 200, 1000])
        return f"<presence><show>xa</show><x xmlns='urn:chaos:deep'>{nested(depth)}</x></presence>"

    def idle(self) -> str:
        r = self.random
        since = r.choice(["garbage", "", "9999-99-99T99:99:99Z", "2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z",
                          "9999-12-31T23:59:59Z", "2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
                          "2026-12-03T10:00:00+25:00", "2026-12-03T10:00:00.123456789123456789Z",
                          "2026-12-03 10:00:00", "-1", "1e400", characters(r, 10)])
        extra = "<idle xmlns='urn:xmpp:idle:1'/>" if r.random() < 0.3 else ""
        return f"<presence><show>away</show><idle xmlns='urn:xmpp:idle:1' since={quoteattr(since)}/>{extra}</presence>"

    def delay(self) -> str:
        r = self.random
        stamp = r.choice(["garbage", "", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
                          "20261203T10:00:00", characters(r, 10)])
        sender = r.choice(["", "example.test", "alice@example.test", "@@@", characters(r, 10)])
        namespace = r.choice(["urn:xmpp:delay", "jabber:x:delay"])
        return (f"<presence><show>dnd</show><delay xmlns='{namespace}' stamp={quoteattr(stamp)} "
                f"from={quoteattr(sender)}>{escape(characters(r, 20))}</delay></presence>")

    def vcardUpdate(self) -> str:
        r = self.random
        photo = r.choice(["not-hex", "", "0" * 40, "f" * 39, "g" * 40, "a" * 4000, "A" * 40,
                          "<x xmlns='urn:x'/>", escape(characters(r, 20))])
        content = r.choice([f"<photo>{photo}</photo>", "", "<photo/>",
                            f"<photo>{'a' * 40}</photo><photo>{'b' * 40}</photo>", f"<nick>{photo}</nick>"])
        return f"<presence><x xmlns='vcard-temp:x:update'>{content}</x></presence>"

    def characters(self) -> str:
        return f"<presence><show>chat</show>{self.status(200)}</presence>"

    def manyChildren(self) -> str:
        r = self.random
        count = r.choice([100, 1000, 5000])
        child = r.choice(["<status>many</status>", "<show>away</show>", "<priority>1</priority>",
                          "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='x' ver='y'/>"])
        return f"<presence>{child * count}</presence>"

    def oddAttributes(self) -> str:
        r = self.random
        attribute = r.choice([
            "type='garbage'", "type=''", "type='error'", "type='probe'", "type='unavailable'",
            f"id={quoteattr('i' * 10_000)}", "xml:lang=''", f"a{'b' * 1000}='c'",
            "to='example.test'", "to='nobody@example.test'", f"to={quoteattr(characters(r, 10))}",
        ])
        return f"<presence {attribute}>{self.status()}</presence>"


def wellFormed(harness: Harness, jid: str) -> list[str]:
    """
    Ask for each answer about C{jid} that carries what the user sent;
    returns what was wrong with any (no 200, XML or JSON that does not
    parse).
    """
    problems = []
    for kind in ("xml", "svg", "json", "shields", "text"):
        answer = harness.get(harness.statusTarget(jid, kind))
        if answer.status != 200:
            problems.append(f"type={kind}: {answer.status or answer.error}")
            continue
        try:
            if kind in ("xml", "svg"):
                ElementTree.fromstring(answer.body)
            elif kind in ("json", "shields"):
                json.loads(answer.body)
            else:
                answer.body.decode("utf-8")
        except (ElementTree.ParseError, ValueError) as e:
            problems.append(f"type={kind}: {e}: {answer.body[:200]!r}")
    return problems


async def run(harness: Harness, full: bool) -> Figures:
    """
    Send the hostile presences from mallory, log many in with many
    resources (each sending a hostile presence too), then an ordinary
    presence from mallory; check the answers every L{BATCH} presences.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited = harness.limited()
    count = FULL_PRESENCES if full else SHORT_PRESENCES
    resources = FULL_RESOURCES if full else SHORT_RESOURCES
    mallory = f"mallory@{harness.prosody.domain}"
    many = f"many@{harness.prosody.domain}"
    logins, reconnects = harness.logins(), harness.metric("presenced_xmpp_reconnects_total")
    tracebacks, received = harness.tracebacks(), harness.metric("presenced_presence_stanzas_total")
    prosodyLog = len(harness.prosody.log())
    rssBefore = figures.add("presenced RSS before (MiB)", round(harness.rss() / 2 ** 20, 1))

    generator = Stanzas(harness.seed)
    kinds: Counter[str] = Counter()
    problems: list[str] = []
    checks = 0
    dropped = 0
    sender = await harness.login("mallory", "hostile")
    started = time.monotonic()

    async def check() -> None:
        nonlocal checks
        checks += 1
        for jid in (mallory, many):
            problems.extend(await threads.deferToThread(wellFormed, harness, jid))

    oversized = 0
    for n, (kind, stanza) in enumerate(generator.presences(count), 1):
        oversized += len(stanza.encode("utf-8")) > PROSODY_STANZA_LIMIT
        if sender.closed:
            dropped += 1
            await harness.logout(sender)
            sender = await harness.login("mallory", f"hostile{n}")
        kinds[kind] += 1
        sender.manager.send(stanza)
        if n % BATCH == 0:
            await harness.sleep(0.05)
            await check()
        if n % 250 == 0:
            harness.say(f"{n} hostile presences sent, {time.monotonic() - started:.0f} s")

    manyClients = []
    loginFailures: Counter[str] = Counter()
    for n in range(resources):
        try:
            client = await harness.login("many", f"r{n}")
        except Exception as e:  # what Prosody answered is a figure, not a failure of the harness
            loginFailures[type(e).__name__] += 1
            continue
        manyClients.append(client)
        # Prosody sends each resource's presence to all the others: small
        # ones, or that is what would be measured.
        client.manager.send(next(generator.presences(1, small=True))[1])
        if n % BATCH == 0:
            await check()
        if n % 100 == 0:
            harness.say(f"{n} resources of many logged in, {time.monotonic() - started:.0f} s")
    await harness.sleep(0.5)
    await check()
    loggedIn = sum(not c.closed for c in manyClients)
    resourcesOnline = harness.metric("presenced_resources_online")

    if sender.closed:
        dropped += 1
        await harness.logout(sender)
        sender = await harness.login("mallory", "ordinary")
    sender.available(show="dnd", status="Ordinary again")
    final = await harness.within(lambda: (harness.json(mallory) or {}).get("status") == "Ordinary again", 10)
    answer = await threads.deferToThread(harness.json, mallory)
    await check()
    elapsed = time.monotonic() - started

    figures.add("hostile presences sent by mallory", count)
    figures.add("presences by kind", dict(sorted(kinds.items())))
    figures.add("of them over Prosody's 256 KiB stanza limit", oversized)
    figures.add("mallory's streams closed by Prosody (then logged in again)", dropped)
    figures.add("resources of one user logged in", f"{loggedIn} of {resources}")
    figures.add("resources presenced tracked then, of all users", int(resourcesOnline))
    if loginFailures:
        figures.add("logins refused", dict(loginFailures))
    figures.add("presence stanzas presenced received",
                int(harness.metric("presenced_presence_stanzas_total") - received))
    prosodyTracebacks = [line for line in harness.prosody.log()[prosodyLog:].splitlines() if "Traceback" in line]
    figures.add("tracebacks in Prosody's own log", len(prosodyTracebacks))
    if prosodyTracebacks:
        figures.notes.append("Prosody's own traceback, e.g.: " + prosodyTracebacks[0].split("\t")[-1])
    figures.add("seconds", round(elapsed, 1))
    figures.add("answer checks (5 answer types, 2 users each)", checks)
    figures.add("refused or cut by presenced's limits", dict(sorted((harness.limited() - limited).items())))
    figures.expect("malformed or failed answers", len(problems), 0)
    figures.expect("link drops (logins of presenced's link)", harness.logins() - logins, 0)
    figures.expect("link reconnects (metric)", int(harness.metric("presenced_xmpp_reconnects_total") - reconnects), 0)
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacks, 0)
    figures.expect("ordinary presence shown", final is not None and answer is not None
                   and (answer["state"], answer["status"]) == ("dnd", "Ordinary again"), True)
    rssAfter = figures.add("presenced RSS after (MiB)", round(harness.rss() / 2 ** 20, 1))
    figures.add("RSS growth (MiB)", round(rssAfter - rssBefore, 1))
    figures.notes.extend(problems[:5])

    await harness.logout(sender)
    for client in manyClients:
        await harness.logout(client)
    return figures
