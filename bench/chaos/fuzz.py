"""
Scenario 1, HTTP fuzz: generated requests, from a seeded C{random.Random},
written as raw bytes to presenced's port over TCP -- random and mutated
query strings over every parameter, percent-encodings, invalid UTF-8,
huge and repeated parameters, unknown methods, broken request lines and
headers, pipelined garbage, bodies that lie about their length.

Half the cases go to presenced in public mode, half with subscribers
only, where a C{req_jid} makes it read the user's roster from Prosody.
No answer may be a 5xx, the log may hold no traceback, and afterwards
health is 200 and alice's text answer is her status.

The generator is a seeded C{random.Random} rather than Hypothesis: the
cases are plain bytes that need no strategy, their number is exact, the
same seed makes the same cases on CPython and PyPy without a further
dependency pinned for each, and a case that gets a 5xx is kept verbatim
in the figures' notes, so shrinking is not missed.
"""

from __future__ import annotations

import codecs
import random
import re
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

from twisted.internet import threads

from bench.chaos.harness import BASELINE_STATUS, Figures, Harness

NUMBER = 1
TITLE = "HTTP fuzz"

FULL_CASES = 10_000
SHORT_CASES = 400
WORKERS = 8

#: Every parameter presenced reads, and some it does not.
PARAMETERS = ["jid", "req_jid", "req_exp", "req_sig", "type", "label", "message", "images",
              "available", "chat", "away", "xa", "dnd", "offline", "forbidden", "callback", "jid[]", "", "JID"]
TYPES = ["image", "text", "xml", "json", "svg", "shields", "avatar", "IMAGE", "png", "", "text\x00"]
PATHS = ["/plugins/presence/status", "/plugins/presence/statuses", "/plugins/presence/events",
         "/plugins/presence/health", "/plugins/presence/metrics", "/plugins/presence/", "/plugins/presence",
         "/plugins/", "/", "/favicon.ico", "/plugins/presence/status/", "/plugins/presence/status/x",
         "//plugins//presence//status", "/plugins/presence/../presence/status", "/plugins/presence/%73tatus",
         "/plugins/presence/widget.js", "/plugins/presence/avatar", "*"]
METHODS = ["GET", "HEAD", "POST", "OPTIONS"]
ODD_METHODS = ["PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND", "get", "G\x00T", "GET GET", "BREW",
               "M" * 300, "", "\udcff\udcfe"]
VERSIONS = ["HTTP/1.1", "HTTP/1.0"]
ODD_VERSIONS = ["HTTP/2.0", "HTTP/9.9", "HTTP/1.1x", "HTTP/", "http/1.1", "HTTP/1.1 extra", "", "HTTP/1.-1",
                "HTTP/11", "HTTP/1.1\x00"]
#: Strings of every character class: ASCII punctuation, controls, markup,
#: non-ASCII letters, right-to-left, combining, emoji, noncharacters, NUL.
PIECES = ["alice", "example.test", "@", "/", "&", "=", ";", "?", "#", "+", "%", " ", "\t", "\r", "\n", "\x00",
          "\x7f", "<script>", "'\"", "\\", "é", "ß", "Ж", "中文", "\u202e", "e\u0301", "😀", "\ufeff", "\uffff",
          "\ud800", "--IMAGE--", "http://", "https://img.example.org/", "javascript:", "..", "*", "[", "]",
          "null", "-1", "0", "99999999999999999999", "1e400", "nan"]
#: Percent-encodings that decode to no valid UTF-8, or to controls.
BAD_ESCAPES = ["%FF", "%C0%AF", "%ED%A0%80", "%E2%82", "%F4%90%80%80", "%00", "%0D%0A", "%", "%G1", "%%", "%2",
               "%C3", "%FE%FF", "%80"]


def _raw(error: UnicodeEncodeError) -> tuple[bytes, int]:
    """
    Encodes U+DC80..U+DCFF as the bytes 0x80..0xFF (as surrogateescape
    decodes them) and any other surrogate as UTF-8 would if it could, so
    that a request's text can carry any bytes.
    """
    piece = error.object[error.start:error.end]
    return b"".join(bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF else c.encode("utf-8", "surrogatepass")
                    for c in piece), error.end


codecs.register_error("presenced-chaos-raw", _raw)


def wire(text: str) -> bytes:
    """
    C{text} as bytes on the wire: UTF-8, with raw bytes and surrogates
    kept (see L{_raw}).
    """
    return text.encode("utf-8", "presenced-chaos-raw")


@dataclass
class Case:
    """
    One connection's worth of bytes, the requests in it, and how long an
    answer may be awaited.
    """

    kind: str
    data: bytes
    requests: int = 1
    wait: float = 3.0


class Generator:
    """
    Makes L{Case}s from a seeded random generator; the same seed makes the
    same cases.
    """

    def __init__(self, seed: int, domain: str, alice: str) -> None:
        self.random = random.Random(seed)
        self.domain = domain
        self.alice = alice
        self.kinds = [
            (self.mutatedQuery, 30), (self.claims, 8), (self.randomQuery, 10), (self.escapes, 10), (self.huge, 5),
            (self.repeated, 5), (self.form, 6), (self.paths, 8), (self.oddMethod, 5), (self.brokenLine, 7),
            (self.brokenHeaders, 7), (self.pipelined, 4), (self.lyingBody, 3),
        ]

    def cases(self, count: int):
        functions = [f for f, _ in self.kinds]
        weights = [w for _, w in self.kinds]
        for _ in range(count):
            yield self.random.choices(functions, weights)[0]()

    # values

    def text(self, most: int = 12) -> str:
        return "".join(self.random.choice(PIECES) for _ in range(self.random.randint(0, most)))

    def jid(self) -> str:
        r = self.random
        return r.choice([
            self.alice, f"alice@{self.domain}/desk", f"mallory@{self.domain}", f"nobody@{self.domain}",
            "alice@other.test", f"{self.text()}@{self.domain}", f"{self.text()}@{self.text()}/{self.text()}",
            self.domain, "@", "", f"{'a' * r.choice([1023, 1024, 3000])}@{self.domain}", self.text(),
            f"ALICE@{self.domain.upper()}", f"alice@{self.domain}.", "[::1]", f"alice@{self.domain}@x",
        ])

    def value(self, name: str) -> str:
        r = self.random
        if name in ("jid", "req_jid") and r.random() < 0.7:
            return self.jid()
        if name == "type" and r.random() < 0.7:
            return r.choice(TYPES)
        if name == "message" and r.random() < 0.5:
            return r.choice(["state", "status", "STATUS", ""])
        if name == "req_exp" and r.random() < 0.5:
            return str(r.choice([0, -1, int(time.time()) + 3600, 2 ** 64, 10 ** 30]))
        if name in ("images", "available", "chat", "away", "xa", "dnd", "offline", "forbidden") and r.random() < 0.6:
            return r.choice(["http://img.example.org/--IMAGE--.png", "https://u:p@example.org/--IMAGE--",
                             "ftp://example.org/--IMAGE--", "//example.org/--IMAGE--", "http:\\\\evil/--IMAGE--",
                             "http://[::1/--IMAGE--", "javascript:alert(1)//--IMAGE--", "--IMAGE--"])
        return self.text()

    def encode(self, text: str) -> str:
        """
        Percent-encode C{text} as a browser would, most of the time; else
        leave some of it raw.
        """
        data = text.encode("utf-8", "surrogatepass")
        if self.random.random() < 0.8:
            return quote_from_bytes(data, safe="@/:")
        return data.decode("utf-8", "surrogateescape")

    def query(self, names: list[str]) -> str:
        return "&".join(f"{self.encode(name)}={self.encode(self.value(name))}" for name in names)

    # requests

    def request(self, method: str = "GET", target: str = "/plugins/presence/status", headers: list[str] = (),
                body: bytes = b"", version: str = "HTTP/1.1", close: bool = True) -> bytes:
        lines = [f"{method} {target} {version}", "Host: 127.0.0.1", *headers]
        if close:
            lines.append("Connection: close")
        return wire("\r\n".join(lines) + "\r\n\r\n") + body

    def status(self, query: str) -> str:
        return f"/plugins/presence/status?{query}"

    def mutatedQuery(self) -> Case:
        r = self.random
        names = ["jid"] + r.sample(PARAMETERS, r.randint(0, 5))
        query = self.query(names)
        if query and r.random() < 0.5:
            position = r.randrange(len(query))
            query = query[:position] + r.choice(["&", "=", "%", "&&", "==", ";", "#", "+", "%26", ""]) + query[position + 1:]
        return Case("mutated query", self.request(r.choice(METHODS[:2]), self.status(query)))

    def claims(self) -> Case:
        """
        A request about a user by a claimed requester, both well-formed
        or nearly: what makes presenced read rosters with subscribers only.
        """
        r = self.random
        users = ["alice", "mallory", "many", "nobody", self.text(3) or "x", "a" * 1023, "ALICE"]
        jid, requester = (f"{r.choice(users)}@{self.domain}" for _ in range(2))
        query = f"jid={self.encode(jid)}&req_jid={self.encode(requester)}&type={r.choice(TYPES[:7])}"
        if r.random() < 0.3:
            query += "&" + self.query(r.sample(PARAMETERS[2:], 2))
        target = r.choice(["/plugins/presence/status", "/plugins/presence/statuses", "/plugins/presence/events"])
        return Case("claimed requesters", self.request(r.choice(METHODS[:3]), f"{target}?{query}"),
                    wait=1.0 if target.endswith("events") else 3.0)

    def randomQuery(self) -> Case:
        r = self.random
        query = "".join(r.choice("abcdefghijklmnopqrstuvwxyz_=&%;+.@/0123456789") for _ in range(r.randint(0, 120)))
        return Case("random query", self.request("GET", r.choice(PATHS[:3]) + "?" + query))

    def escapes(self) -> Case:
        r = self.random
        name = r.choice(PARAMETERS[:8])
        value = "".join(r.choice(BAD_ESCAPES + ["alice", "@", self.domain]) for _ in range(r.randint(1, 8)))
        pairs = [f"jid={self.alice}", f"{name}={value}"]
        if r.random() < 0.3:
            pairs.append(r.choice(BAD_ESCAPES) + "=" + "x")
        r.shuffle(pairs)
        target = self.status("&".join(pairs))
        if r.random() < 0.2:
            target = "/plugins/presence/" + r.choice(BAD_ESCAPES) + "?" + "&".join(pairs)
        return Case("percent-encodings", self.request("GET", target))

    def huge(self) -> Case:
        r = self.random
        size = r.choice([1_000, 10_000, 65_000, 200_000])
        name = r.choice(PARAMETERS)
        if r.random() < 0.3:
            name = "x" * size
            value = "1"
        else:
            value = r.choice("a%é") * (size // 2)
        target = self.status(f"jid={self.alice}&{self.encode(name)}={self.encode(value)}")
        return Case("huge parameter", self.request("GET", target), wait=5.0)

    def repeated(self) -> Case:
        r = self.random
        name = r.choice(PARAMETERS)
        count = r.choice([2, 3, 100, 129, 1000, 5000])
        query = "&".join(f"{name}={self.encode(self.value(name))}" for _ in range(count))
        return Case("repeated parameters", self.request("GET", self.status(f"jid={self.alice}&{query}")), wait=5.0)

    def form(self) -> Case:
        r = self.random
        body = wire(self.query(["jid"] + r.sample(PARAMETERS, r.randint(0, 4))))
        contentType = r.choice(["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                "multipart/form-data", "text/plain", "application/json", "",
                                "application/x-www-form-urlencoded; charset=latin-1"])
        if contentType.startswith("multipart") and r.random() < 0.5:
            body = b"--x\r\nContent-Disposition: form-data; name=\"jid\"\r\n\r\n" + self.alice.encode() + b"\r\n--x--"
        headers = [f"Content-Type: {contentType}", f"Content-Length: {len(body)}"]
        target = r.choice(["/plugins/presence/status", self.status(f"type={r.choice(TYPES)}"),
                           "/plugins/presence/statuses", "/plugins/presence/events"])
        return Case("form body", self.request("POST", target, headers, body))

    def paths(self) -> Case:
        r = self.random
        path = r.choice(PATHS + ["/" + self.encode(self.text(30)), "/plugins/presence/" + "a" * 70_000,
                                 "/plugins/presence/\udcff\udcfe", "http://127.0.0.1/plugins/presence/status"])
        query = self.query(["jid"] + r.sample(PARAMETERS, r.randint(0, 3))) if r.random() < 0.8 else ""
        case = Case("paths", self.request(r.choice(METHODS), path + ("?" + query if query else "")))
        if "events" in path:
            case.wait = 1.0  # an event stream stays open
        return case

    def oddMethod(self) -> Case:
        r = self.random
        target = self.status(f"jid={self.alice}&type={r.choice(TYPES)}")
        return Case("unknown methods", self.request(r.choice(ODD_METHODS), target))

    def brokenLine(self) -> Case:
        r = self.random
        target = self.status(f"jid={self.alice}&type=text")
        line = r.choice([
            f"GET {target} {r.choice(ODD_VERSIONS)}", f"GET {target}", "GET", "", " ", f"GET  {target}  HTTP/1.1",
            f"GET\t{target}\tHTTP/1.1", f" GET {target} HTTP/1.1", f"GET {target}\x00 HTTP/1.1",
            f"GET {target} HTTP/1.1 HTTP/1.1", f"{self.text(40)}", f"GET /{' ' * 50}x HTTP/1.1",
            f"GET {target}\rHTTP/1.1", "\x16\x03\x01\x02\x00\x01\x00\x01\udcfc\x03\x03",  # a TLS hello
            "PRI * HTTP/2.0\r\n\r\nSM", f"GET {'/' * 100_000} HTTP/1.1",
        ])
        data = wire(line + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        if r.random() < 0.2:
            data = data.replace(b"\r\n", b"\n")
        return Case("broken request lines", data)

    def brokenHeaders(self) -> Case:
        r = self.random
        header = r.choice([
            "NoColonHere", "Bad Name: x", ": no name", "X-Long: " + "a" * r.choice([10_000, 70_000, 300_000]),
            " folded: continuation", "X-A: b\r\n continued", "Host: ", "Host: a\r\nHost: b",
            "Content-Length: abc", "Content-Length: -5", "Content-Length: 99999999999999999999999",
            "Transfer-Encoding: gzip, chunked, nonsense", "X-Nul: a\x00b", "X-Bytes: \udcff\udcfe",
            "If-None-Match: " + self.text(), "If-Modified-Since: " + self.text(), "Origin: " + self.text(),
            "X-Forwarded-For: " + self.text(), "Accept: " + self.text(), "Cookie: " + "a=b; " * 2000,
            "Range: bytes=" + self.text(), "Expect: 100-continue", "Authorization: Basic " + self.text(),
        ])
        headers = [header] * (r.choice([1, 1, 1, 200, 1000]) if len(header) < 200 else 1)
        target = self.status(f"jid={self.alice}&type={r.choice(TYPES)}")
        return Case("broken headers", self.request(r.choice(METHODS[:2]), target, headers), wait=5.0)

    def pipelined(self) -> Case:
        r = self.random
        count = r.randint(2, 10)
        data = b"".join(self.request("GET", self.status(f"jid={self.alice}&type=text"), close=False)
                        for _ in range(count))
        garbage = r.choice([b"\x00" * 100, b"GARBAGE\r\n\r\n", bytes(r.randrange(256) for _ in range(500)),
                            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", b"\r\n\r\n\r\n"])
        return Case("pipelined garbage", data + garbage + self.request("GET", self.status(f"jid={self.alice}")),
                    requests=count + 1, wait=3.0)

    def lyingBody(self) -> Case:
        r = self.random
        body = wire(self.query(["jid", "type"]))
        lie = r.choice(["longer", "shorter", "chunked", "both"])
        if lie == "longer":
            headers = [f"Content-Length: {len(body) + r.choice([1, 100, 10_000_000])}"]
        elif lie == "shorter":
            headers = [f"Content-Length: {max(0, len(body) - r.randint(1, 10))}"]
        elif lie == "chunked":
            headers = ["Transfer-Encoding: chunked"]
            body = r.choice([b"zz\r\n" + body, b"5\r\n" + body + b"\r\n0\r\n\r\n", b"ffffffffffffff\r\n" + body,
                             b"-1\r\n\r\n"])
        else:
            headers = ["Transfer-Encoding: chunked", f"Content-Length: {len(body)}"]
        headers.append("Content-Type: application/x-www-form-urlencoded")
        # A body shorter than promised is awaited: no answer is due.
        return Case(f"lying bodies ({lie})", self.request("POST", "/plugins/presence/status", headers, body),
                    wait=0.5 if lie in ("longer", "chunked") else 3.0)


_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")


def send(port: int, case: Case) -> tuple[list[int], str]:
    """
    Send C{case} on a new connection to 127.0.0.1:C{port} and read what
    comes back until the server closes, or it has answered every request
    and gone quiet, or C{case.wait} passes; returns the status codes of
    the answers, and how the connection ended.
    """
    received = b""
    ended = "closed"
    deadline = time.monotonic() + case.wait
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=case.wait)
    except OSError as e:
        return [], f"connect failed: {type(e).__name__}"
    with connection:
        try:
            connection.sendall(case.data)
        except OSError as e:
            ended = f"send failed: {type(e).__name__}"
        while True:
            left = deadline - time.monotonic()
            answered = len(_STATUS.findall(received)) >= case.requests
            if left <= 0:
                ended = "answered, then kept open" if answered else "awaited (no answer yet)"
                break
            connection.settimeout(min(left, 0.2) if answered else left)
            try:
                data = connection.recv(65536)
            except socket.timeout:
                if answered:
                    ended = "answered, then kept open"
                    break
                continue
            except OSError as e:
                ended = f"reset: {type(e).__name__}"
                break
            if not data:
                break
            received += data
    return [int(code) for code in _STATUS.findall(received)], ended


async def run(harness: Harness, full: bool) -> Figures:
    """
    Send the generated requests from L{WORKERS} threads at once, the first
    half to presenced in public mode, the second with subscribers only
    (where a C{req_jid} makes it read rosters from Prosody); then check the
    log, health and a known answer.
    """
    figures = Figures(NUMBER, TITLE, harness.interpreter, full)
    limited = harness.limited()
    count = FULL_CASES if full else SHORT_CASES
    cases = list(Generator(harness.seed, harness.prosody.domain, harness.alice).cases(count))
    tracebacksBefore = harness.tracebacks()

    def fuzz(cases: list[Case]) -> list[tuple[list[int], str]]:
        with ThreadPoolExecutor(WORKERS) as pool:
            return list(pool.map(lambda case: send(harness.presenced.port, case), cases))

    started = time.monotonic()
    half = count // 2
    outcomes = await threads.deferToThread(fuzz, cases[:half])
    harness.writeSettings(public=False)
    reloaded = await harness.reload()
    lookups = harness.series("presenced_roster_cache_lookups_total", "result")
    outcomes += await threads.deferToThread(fuzz, cases[half:])
    lookups = harness.series("presenced_roster_cache_lookups_total", "result") - lookups
    harness.writeSettings()
    await harness.reload()
    elapsed = time.monotonic() - started
    statuses: Counter[int] = Counter()
    private: Counter[int] = Counter()
    endings: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for n, (case, (codes, ended)) in enumerate(zip(cases, outcomes)):
        if any(code >= 500 for code in codes) and len(figures.notes) < 10:
            figures.notes.append(f"{codes} for {case.kind}: {case.data[:160]!r}")
        statuses.update(codes)
        if n >= half:
            private.update(codes)
        endings[ended] += 1
        kinds[case.kind.split(" (")[0]] += 1
    figures.expect("switch to subscribers only (SIGHUP)", reloaded, "done")
    figures.add("connections (generated cases)", len(cases))
    figures.add("requests written", sum(case.requests for case in cases))
    figures.add("bytes written", sum(len(case.data) for case in cases))
    figures.add("seed", harness.seed)
    figures.add("seconds", round(elapsed, 1))
    figures.add("answers by status", dict(sorted(statuses.items())))
    figures.add("of them with subscribers only", dict(sorted(private.items())))
    figures.add("roster cache lookups then", dict(sorted(lookups.items())))
    figures.add("connections by ending", dict(sorted(endings.items())))
    figures.add("cases by kind", dict(sorted(kinds.items())))
    figures.add("refused or cut by presenced's limits", dict(sorted((harness.limited() - limited).items())))
    figures.expect("5xx answers", sum(n for code, n in statuses.items() if code >= 500), 0)
    figures.expect("tracebacks in the log", harness.tracebacks() - tracebacksBefore, 0)
    figures.expect("daemon running", harness.running(), True)
    figures.expect("health afterwards", await threads.deferToThread(harness.health), 200)
    figures.expect("alice's text afterwards", await threads.deferToThread(harness.text, harness.alice),
                   BASELINE_STATUS)
    return figures
