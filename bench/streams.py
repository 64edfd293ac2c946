"""
Event streams under load, on loopback: many open streams, one change
reaching many of them, and image answers while streams are open.

    .venv/bin/python bench/streams.py [--streams 10000] [--fanout 1000] [--rounds 3] [--interpreter PATH]

Starts a throwaway Prosody and C{twistd -n presenced} (public), opens the
streams from this process (Twisted), and prints the figures as JSON:

- RSS of presenced per open stream (each following one of 1,000 users);
- for one presence change of a user followed by C{--fanout} streams, the
  time from the change being sent to each stream receiving its event
  (p50, p99, max), measured by the receiving clients;
- image requests per second (wrk) with the streams open, and with none:
  before they are opened and after they are closed (the median of both,
  so that a drift of the machine's speed does not favour either).

Every loop is bounded by a count and a timeout; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, protocol, task, threads  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402

from presenced.sandbox.client import SandboxClient  # noqa: E402
from presenced.sandbox.prosody import Prosody, freePort, waitForPort  # noqa: E402

PASSWORD = "bench-password"
FOLLOWED_USERS = 1000


def rss(pid: int) -> int:
    """
    The resident set size of C{pid}, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class StreamClient(protocol.Protocol):
    """
    One raw HTTP/1.1 event-stream request; counts the events it gets and
    notes when the first one after L{expect} was set arrived.
    """

    def __init__(self, target: bytes) -> None:
        self.target = target
        self.events = 0
        self.expect: bytes | None = None
        self.arrived: float | None = None
        self.opened: defer.Deferred = defer.Deferred()
        self._buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(b"GET " + self.target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        now = time.monotonic()
        self._buffer += data
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            if b"event: presence" not in block:
                continue
            self.events += 1
            if self.events == 1 and not self.opened.called:
                self.opened.callback(self)
            if self.expect is not None and self.expect in block and self.arrived is None:
                self.arrived = now


class StreamFactory(protocol.Factory):
    def __init__(self, target: bytes) -> None:
        self.target = target

    def buildProtocol(self, addr):
        return StreamClient(self.target)


async def openStreams(reactor, port: int, targets: list[bytes], batch: int = 200,
                      timeout: float = 120.0) -> list[StreamClient]:
    """
    Open a stream for each target, C{batch} at a time, each ready once its
    first event came.
    """
    clients: list[StreamClient] = []
    deadline = time.monotonic() + timeout
    for start in range(0, len(targets), batch):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(clients)} streams opened within {timeout}s")
        connecting = []
        for target in targets[start:start + batch]:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30)
            connecting.append(endpoint.connect(StreamFactory(target)))
        opened = await defer.gatherResults(connecting)
        await defer.gatherResults([c.opened for c in opened]).addTimeout(60, reactor)
        clients.extend(opened)
    return clients


def wrk(url: str, seconds: int) -> float:
    output = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", url],
                            capture_output=True, text=True, check=True).stdout
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(output)


async def run(reactor, options: argparse.Namespace) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, options.streams * 2 + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    work = Path(tempfile.mkdtemp(prefix="presenced-streams-"))
    prosody = Prosody(loglevel="warn")
    presenced = None
    star = None
    clients: list[StreamClient] = []
    try:
        prosody.start()
        prosody.register("star", PASSWORD)
        port = freePort()
        settings = work / "presenced.ini"
        settings.write_text(f"""
[xmpp]
jid = {prosody.component}
secret = {prosody.secret}
host = 127.0.0.1
port = {prosody.componentPort}
domain = {prosody.domain}

[http]
listen = tcp:{port}:interface=127.0.0.1:backlog=1024
max_streams = {options.streams + options.fanout + 10}
max_streams_per_client = {options.streams + options.fanout + 10}
max_connections = {options.streams + options.fanout + 1000}
max_connections_per_client = {options.streams + options.fanout + 1000}

[presence]
public = true
""")
        twistd = str(Path(options.interpreter).with_name("twistd"))
        presenced = subprocess.Popen([twistd, "--nodaemon", "--pidfile=", f"--logfile={work / 'presenced.log'}",
                                      "presenced", "--config", str(settings)], stdin=subprocess.DEVNULL)
        waitForPort(port, 30, presenced)
        star = await SandboxClient(reactor, f"star@{prosody.domain}/bench", PASSWORD, prosody.c2sPort).connect()
        star.available(status="0")
        await task.deferLater(reactor, 1.0)
        image = f"http://127.0.0.1:{port}/plugins/presence/status?jid=star@{prosody.domain}"
        wrk(image, 2)  # warm up
        without = [await threads.deferToThread(wrk, image, options.duration) for _ in range(options.rounds)]

        base = rss(presenced.pid)
        targets = [f"/plugins/presence/events?jid=u{n % FOLLOWED_USERS}@{prosody.domain}".encode()
                   for n in range(options.streams)]
        began = time.monotonic()
        clients = await openStreams(reactor, port, targets)
        opened = time.monotonic() - began
        await task.deferLater(reactor, 2.0)
        perStream = (rss(presenced.pid) - base) / options.streams

        fans = await openStreams(reactor, port, [f"/plugins/presence/events?jid=star@{prosody.domain}".encode()]
                                 * options.fanout)
        latencies = []
        for change in range(1, options.rounds + 1):
            marker = f"change {change}".encode()
            for fan in fans:
                fan.expect, fan.arrived = marker, None
            sent = time.monotonic()
            star.available(status=marker.decode())
            for _ in range(200):
                if all(fan.arrived is not None for fan in fans):
                    break
                await task.deferLater(reactor, 0.025)
            missing = sum(fan.arrived is None for fan in fans)
            if missing:
                raise RuntimeError(f"{missing} of {len(fans)} streams missed change {change} within 5 s")
            latencies.extend(fan.arrived - sent for fan in fans)
        latencies.sort()

        withStreams = [await threads.deferToThread(wrk, image, options.duration) for _ in range(options.rounds)]
        for client in clients + fans:
            client.transport.loseConnection()
        await task.deferLater(reactor, 2.0)
        for _ in range(options.rounds):
            without.append(await threads.deferToThread(wrk, image, options.duration))
        return {
            "streams": options.streams,
            "seconds_to_open": round(opened, 2),
            "rss_bytes_per_stream": round(perStream),
            "fanout": options.fanout,
            "fanout_latency_ms": {
                "p50": round(1000 * statistics.median(latencies), 1),
                "p99": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 1),
                "max": round(1000 * latencies[-1], 1),
            },
            "image_rps_with_streams": statistics.median(withStreams),
            "image_rps_without_streams": statistics.median(without),
            "image_ratio": round(statistics.median(withStreams) / statistics.median(without), 3),
        }
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abortConnection()
        if star is not None:
            await star.disconnect()
        if presenced is not None:
            presenced.terminate()
            presenced.wait(30)
        prosody.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark presenced's event streams on this machine.")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--interpreter", default=sys.executable,
                        help="the Python whose twistd runs presenced (e.g. .venv-pypy/bin/python)")
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(_report(reactor, options)))


async def _report(reactor, options) -> None:
    print(json.dumps(await run(reactor, options), indent=2))


if __name__ == "__main__":
    main()
