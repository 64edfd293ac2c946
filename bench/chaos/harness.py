"""
What every scenario runs against: a real Prosody (the sandbox's), the real
C{twistd -n presenced} under one interpreter (the benchmark's
L{Presenced}), a user online through a real client, and ways to ask
presenced over HTTP, read its log, metrics and memory, and load it.

Everything listens and connects on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from twisted.internet import task, threads

from bench.run import Presenced, environment
from presenced.sandbox.client import SandboxClient
from presenced.sandbox.prosody import Prosody

PASSWORD = "chaos-password"

#: The status message of the user who stays online, as text answers show it.
BASELINE_STATUS = "Chaos baseline"

#: Two more components of the harness's Prosody, for a scenario that needs
#: more users online than can log in: a second presenced's, and the one
#: whose users that presenced serves, which speaks for them.
SECOND = "second.presence.example.test"
CROWD = "crowd.example.test"


@dataclass
class Figure:
    """
    One measured figure of a scenario.

    @ivar criterion: what it must be, in words (C{"= 0"}), if anything.
    @ivar met: whether it is, or C{None} for a figure without a criterion.
    @ivar timed: whether the criterion is a time limit, which depends on
        the machine's speed and load.
    """

    name: str
    value: Any
    criterion: str = ""
    met: bool | None = None
    timed: bool = False


@dataclass
class Figures:
    """
    What one scenario measured on one interpreter.
    """

    number: int
    title: str
    interpreter: str
    full: bool
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, name: str, value: Any, criterion: str = "", met: bool | None = None, timed: bool = False) -> Any:
        """
        Record a figure; returns its value.
        """
        self.figures.append(Figure(name, value, criterion, met, timed))
        return value

    def expect(self, name: str, value: Any, wanted: Any) -> Any:
        """
        Record a figure that must equal C{wanted}.
        """
        shown = ("yes" if wanted else "no") if isinstance(wanted, bool) else wanted
        return self.add(name, value, f"= {shown}", value == wanted)

    def within(self, name: str, seconds: float, limit: float) -> float:
        """
        Record a time that must not exceed C{limit} seconds.
        """
        return self.add(name, seconds, f"<= {limit} s", seconds <= limit, timed=True)

    def __getitem__(self, name: str) -> Any:
        return next(f.value for f in self.figures if f.name == name)

    @property
    def failed(self) -> list[Figure]:
        """
        The figures whose criterion is not met.
        """
        return [f for f in self.figures if f.met is False]


@dataclass
class Answer:
    """
    An HTTP answer, or why there was none (C{status} 0).
    """

    status: int
    body: bytes = b""
    error: str = ""


def get(port: int, target: str, timeout: float = 5.0) -> Answer:
    """
    GET C{target} (a path and query) from the presenced on C{port}, on a
    connection of its own.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return Answer(response.status, response.read())
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, error=f"{type(e).__name__}: {e}")
    finally:
        connection.close()


def usersOnline(port: int) -> int | None:
    """
    How many users the presenced on C{port} shows online, as its health
    details (given to loopback) say; C{None} without an answer.
    """
    answer = get(port, "/plugins/presence/health")
    return json.loads(answer.body).get("users_online") if answer.status in (200, 503) else None


def logOf(presenced: Presenced) -> str:
    """
    What C{presenced} has logged so far.
    """
    return presenced.log.read_text(errors="replace") if presenced.log.exists() else ""


def tracebacksIn(log: str) -> int:
    """
    Tracebacks and unhandled errors in C{log}.
    """
    return log.count("Traceback (most recent call last)") + log.count("Unhandled Error")


def memoryOf(pid: int, field: str = "VmRSS") -> int:
    """
    C{field} (C{VmRSS}, C{VmHWM}) of process C{pid}'s memory, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


class Harness:
    """
    One Prosody, one presenced under C{interpreter}'s twistd as its
    privileged component, and C{alice} online (away, L{BASELINE_STATUS}).

    @ivar say: tells the person running the scenarios what happens.
    @ivar seed: the seed of every generated input.

    Scenarios may kill and restart Prosody, log users in and change the
    settings, and leave the harness as they found it: Prosody up, the
    default settings in force, alice online.
    """

    def __init__(self, reactor, interpreter: str, say: Callable[[str], None] = lambda line: None,
                 seed: int = 1) -> None:
        self.reactor = reactor
        self.seed = seed
        self.interpreter = interpreter
        self.say = say
        self.work = Path(tempfile.mkdtemp(prefix="presenced-chaos-"))
        self.prosody = Prosody(otherComponents=(SECOND, CROWD))
        self.presenced = Presenced(interpreter, self.prosody, self.prosody.component, self.work)
        self.alice = f"alice@{self.prosody.domain}"
        self.clients: list[SandboxClient] = []
        self.aliceClient: SandboxClient | None = None
        self._processes: list[subprocess.Popen] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.presenced.port}"

    @property
    def pid(self) -> int:
        return self.presenced.pid

    async def start(self) -> None:
        """
        Start Prosody, bring alice online, start presenced and wait until
        it shows her.
        """
        self.prosody.start()
        for name in ("alice", "mallory", "many"):
            self.prosody.register(name, PASSWORD)
        await self.aliceOnline()
        await threads.deferToThread(self.presenced.start, self._spawn)
        await self.until(lambda: self.text(self.alice) == BASELINE_STATUS, 15, "presenced shows alice")

    def _spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **{"env": environment(), **kwargs})
        self._processes.append(process)
        return process

    async def stop(self) -> None:
        """
        Log every client out, then end presenced and Prosody and remove
        their files.
        """
        for client in self.clients:
            await client.disconnect()
        self.clients.clear()
        self.end()

    def end(self) -> None:
        """
        End presenced and Prosody and remove their files, at once.
        """
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.prosody.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)

    # XMPP

    async def login(self, user: str, resource: str, timeout: float = 15.0) -> SandboxClient:
        """
        Log C{user} (a local part) in with C{resource}; the harness logs it
        out when it stops.
        """
        client = SandboxClient(self.reactor, f"{user}@{self.prosody.domain}/{resource}", PASSWORD,
                               self.prosody.c2sPort)
        await client.connect(timeout)
        self.clients.append(client)
        return client

    async def aliceOnline(self) -> SandboxClient:
        """
        Log alice in again (after Prosody restarted) and set her presence.
        """
        if self.aliceClient in self.clients:
            self.clients.remove(self.aliceClient)
        self.aliceClient = await self.login("alice", "desk")
        self.aliceClient.available(show="away", status=BASELINE_STATUS)
        return self.aliceClient

    async def logout(self, client: SandboxClient) -> None:
        if client in self.clients:
            self.clients.remove(client)
        await client.disconnect()

    # HTTP, from any thread

    def get(self, target: str, timeout: float = 5.0) -> Answer:
        """
        GET C{target} (a path and query) from presenced on a connection of
        its own.
        """
        return get(self.presenced.port, target, timeout)

    @staticmethod
    def statusTarget(jid: str, kind: str = "text") -> str:
        return f"/plugins/presence/status?jid={jid}&type={kind}"

    def text(self, jid: str) -> str | None:
        """
        The text answer about C{jid}, or C{None} if there was no 200 answer.
        """
        answer = self.get(self.statusTarget(jid))
        return answer.body.decode("utf-8", "replace") if answer.status == 200 else None

    def json(self, jid: str) -> dict | None:
        """
        The JSON answer about C{jid}, or C{None} if there was no 200 answer.
        """
        answer = self.get(self.statusTarget(jid, "json"))
        return json.loads(answer.body) if answer.status == 200 else None

    def health(self) -> int:
        """
        The health answer's status code (0: no answer).
        """
        return self.get("/plugins/presence/health").status

    def usersOnline(self) -> int | None:
        """
        How many users presenced shows online, as its health details (given
        to loopback) say; C{None} without an answer.
        """
        return usersOnline(self.presenced.port)

    def metric(self, name: str) -> float | None:
        """
        The value of the metric series C{name} (without labels), or C{None}.
        """
        answer = self.get("/plugins/presence/metrics")
        found = re.search(rf"^{re.escape(name)} (\S+)$", answer.body.decode("utf-8", "replace"), re.MULTILINE)
        return float(found.group(1)) if found else None

    def series(self, name: str, label: str) -> Counter[str]:
        """
        The values of the metric C{name} by its one C{label}'s value.
        """
        answer = self.get("/plugins/presence/metrics")
        found = re.findall(rf'^{re.escape(name)}\{{{label}="([^"]*)"\}} (\S+)$',
                           answer.body.decode("utf-8", "replace"), re.MULTILINE)
        return Counter({value: int(float(number)) for value, number in found})

    def limited(self) -> Counter[str]:
        """
        What presenced's limits refused, cut or dropped so far, by limit.
        """
        return self.series("presenced_limited_total", "limit")

    # The daemon

    def log(self) -> str:
        """
        What presenced has logged so far.
        """
        return logOf(self.presenced)

    def tracebacks(self) -> int:
        """
        Tracebacks and unhandled errors in presenced's log so far.
        """
        return tracebacksIn(self.log())

    def logins(self) -> int:
        """
        Times presenced's link to the XMPP server was set up so far.
        """
        return self.log().count("Connected to the XMPP server")

    def rss(self) -> int:
        """
        presenced's resident set size, in bytes.
        """
        return memoryOf(self.pid)

    def running(self) -> bool:
        return self.presenced.process.poll() is None

    def writeSettings(self, extra: str = "", public: bool = True, http: str = "") -> None:
        """
        Write presenced's settings: the benchmark's, public unless asked,
        with C{extra} lines in C{[presence]} and C{http} lines in
        C{[http]}.
        """
        self.presenced.writeSettings(public=public)
        if http:
            text = self.presenced.settings.read_text()
            self.presenced.settings.write_text(text.replace("\n[presence]\n", f"{http.rstrip()}\n\n[presence]\n", 1))
        if extra:
            with self.presenced.settings.open("a") as settings:
                settings.write(extra.rstrip("\n") + "\n")

    async def reload(self, timeout: float = 15.0) -> str:
        """
        Send SIGHUP and wait until presenced logs that the reload was done
        or aborted; returns which.
        """
        log = self.log()
        done, aborted = log.count("Reload done"), log.count("Reload aborted")
        self.presenced.process.send_signal(1)
        await self.until(lambda: self.log().count("Reload done") > done or self.log().count("Reload aborted") > aborted,
                         timeout, "presenced finishes the reload")
        return "done" if self.log().count("Reload done") > done else "aborted"

    # Time

    async def sleep(self, seconds: float) -> None:
        await task.deferLater(self.reactor, seconds)

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
        """
        Wait until C{predicate()} (called in a thread) is true; returns the
        seconds it took.

        @raise TimeoutError: if C{timeout} passes first.
        """
        started = time.monotonic()
        while True:
            if await threads.deferToThread(predicate):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not within {timeout}s: {what}")
            await self.sleep(interval)

    async def within(self, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
        """
        Like L{until}, but C{None} when C{timeout} passes first.
        """
        try:
            return await self.until(predicate, timeout, "", interval)
        except TimeoutError:
            return None

    def load(self, targets: list[str], seconds: float, requests: int) -> "Load":
        """
        A load client asking presenced for C{targets} in turn, for at most
        C{seconds} and C{requests}; see L{Load}.
        """
        return Load(self.presenced.port, targets, seconds, requests)


class Load:
    """
    Asks presenced continuously, from threads of its own, over keep-alive
    connections, until stopped, C{seconds} have passed or C{requests}
    were sent; counts the answers by status and the connection errors.

    @ivar connections: how many clients ask at once.
    """

    connections = 2

    def __init__(self, port: int, targets: list[str], seconds: float, requests: int) -> None:
        self.port = port
        self.targets = targets
        self.seconds = seconds
        self.requests = requests
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(n,), daemon=True) for n in range(self.connections)]

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> "Load":
        """
        Stop asking and wait for the clients' last answers.
        """
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        return self

    @property
    def failed(self) -> int:
        """
        Requests that got a connection error or a 5xx answer.
        """
        return sum(self.errors.values()) + sum(n for status, n in self.statuses.items() if status >= 500)

    def addFigures(self, figures: Figures, during: str, limited: Counter[str]) -> None:
        """
        Add what the load got to C{figures}: its requests C{during} the
        scenario, the answers by status, what presenced's limits refused
        meanwhile (C{limited}), and the failed requests, which must be none.
        """
        figures.add(f"requests {during}", sum(self.statuses.values()) + sum(self.errors.values()))
        figures.add("answers by status", dict(sorted(self.statuses.items())))
        figures.add("refused or cut by presenced's limits", dict(sorted(limited.items())))
        figures.expect("failed requests (connection errors, 5xx)", self.failed, 0)
        if self.errors:
            figures.add("connection errors", dict(self.errors))

    def _ask(self, offset: int) -> None:
        deadline = time.monotonic() + self.seconds
        connection = None
        n = offset
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.sent >= self.requests:
                    break
                self.sent += 1
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            target = self.targets[n % len(self.targets)]
            n += 1
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                response.read()
                with self._lock:
                    self.statuses[response.status] += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                with self._lock:
                    self.errors[type(e).__name__] += 1
                connection.close()
                connection = None
        if connection is not None:
            connection.close()
