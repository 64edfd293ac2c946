"""
Benchmark presenced, on CPython and on PyPy, against Prosody's
mod_webpresence, the bare twisted.web ceiling and nginx, on this machine,
over loopback, with wrk.

    scripts/bench [--interpreters cpython pypy] [--rounds 3] [--duration 5]
                  [--connections 32] [--output FILE]

Prints a table and writes the results as JSON (bench/results/latest.json
by default).  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from presenced.config import defaultImageDirectory  # noqa: E402
from presenced.sandbox.prosody import Prosody, freePort, waitForPort  # noqa: E402

PASSWORD = "bench-password"
TICKS = os.sysconf("SC_CLK_TCK")

def environment(**variables: str) -> dict[str, str]:
    """
    This process's environment, for a process that imports presenced from
    this checkout, with C{variables} set.
    """
    return {**os.environ, "PYTHONPATH": str(ROOT), **variables}


@dataclass(frozen=True)
class Runtime:
    """
    What presenced can be measured on: an interpreter's virtualenv, and
    environment variables for its processes (such as PyPy's GC settings).
    """

    virtualenv: Path
    variables: tuple[tuple[str, str], ...] = ()

    def executable(self, program: str) -> str:
        return str(self.virtualenv / "bin" / program)

    def environment(self) -> dict[str, str]:
        return environment(**dict(self.variables))


#: Every runtime by name: each interpreter, and in L{main} those of
#: C{--pypy-gc-nursery}.
RUNTIMES = {"cpython": Runtime(ROOT / ".venv"), "pypy": Runtime(ROOT / ".venv-pypy")}


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU time of C{pid} and its live descendants.
    """
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _percentile(output: str, percent: str) -> float | None:
    found = re.search(rf"^\s+{percent}\s+(\S+)$", output, re.MULTILINE)
    return _milliseconds(found.group(1)) if found else None


def wrk(url: str, pid: int, options: argparse.Namespace, duration: int | None = None,
        headers: tuple[str, ...] = ()) -> dict:
    """
    Load C{url} with wrk for C{duration} seconds (C{--duration} by
    default), sending C{headers} with each request; measure the server
    process's CPU meanwhile.  A latency percentile wrk did not report
    is C{None}.
    """
    before = cpuSeconds(pid)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{options.connections}", f"-d{duration or options.duration}s", "--latency",
         *(argument for header in headers for argument in ("-H", header)), url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpuSeconds(pid) - before
    if options.verbose:
        print(url, output, sep="\n", file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors or "Socket errors" in output or not requests:
        raise RuntimeError(f"wrk saw errors for {url}:\n{output}")
    return {
        "requests": requests,
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _percentile(output, "50%"),
        "p99_ms": _percentile(output, "99%"),
        "cpu_seconds_per_10k": cpu / requests * 10_000,
    }


def median(runs: list[dict]) -> dict:
    """
    The median of each figure over C{runs}, of those that have it.
    """
    result = {}
    for key in runs[0]:
        values = [run[key] for run in runs if run[key] is not None]
        result[key] = statistics.median(values) if values else None
    return result


def loadAverage() -> str:
    """
    The machine's load averages over 1, 5 and 15 minutes, as the kernel
    reports them.
    """
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Presenced:
    """
    One presenced under one interpreter's twistd, a component of the
    benchmark's Prosody, with its own port, settings and logs.
    """

    def __init__(self, interpreter: str, prosody: Prosody, component: str, work: Path) -> None:
        self.interpreter = interpreter
        self.prosody = prosody
        self.component = component
        self.port = freePort()
        self.settings = work / f"presenced-{interpreter}.ini"
        self.accessLog = work / f"access-{interpreter}.log"
        self.log = work / f"presenced-{interpreter}.log"
        self.process: subprocess.Popen | None = None

    def start(self, spawn) -> float:
        """
        Start it with C{spawn}; returns the seconds until it was connected
        to Prosody and listening.
        """
        self.writeSettings(public=True)
        started = time.monotonic()
        runtime = RUNTIMES[self.interpreter]
        self.process = spawn([runtime.executable("twistd"), "--nodaemon", "--pidfile=", f"--logfile={self.log}",
                              "presenced", "--config", str(self.settings)], env=runtime.environment())
        self._waitForLog("Connected to the XMPP server")
        waitForPort(self.port, 30, self.process)
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.process.pid

    def writeSettings(self, public: bool, accessLog: bool = False, metrics: bool = True) -> None:
        self.settings.write_text(f"""
[xmpp]
jid = {self.component}
secret = {self.prosody.secret}
port = {self.prosody.componentPort}
domain = {self.prosody.domain}

[http]
listen = tcp:{self.port}:interface=127.0.0.1
access_log = {self.accessLog if accessLog else "off"}
metrics_from = {"127.0.0.0/8" if metrics else ""}

[presence]
public = {"true" if public else "false"}
roster_ttl = 86400
""")

    def reload(self, public: bool, accessLog: bool = False, metrics: bool = True) -> None:
        """
        Change its settings with SIGHUP.
        """
        done = self.log.read_text().count("Reload done")
        self.writeSettings(public, accessLog, metrics)
        self.process.send_signal(signal.SIGHUP)
        self._waitForLog("Reload done", done + 1)

    def _waitForLog(self, text: str, count: int = 1) -> None:
        for _ in range(1200):
            if self.log.exists() and self.log.read_text().count(text) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"presenced on {self.interpreter} did not log {text!r}")


class Targets:
    """
    Every server under test, started on loopback: Prosody with
    mod_webpresence, presenced and the bare twisted.web leaf on each
    interpreter, and nginx.
    """

    def __init__(self, work: Path, interpreters: list[str]) -> None:
        self.work = work
        self.processes: list[subprocess.Popen] = []
        components = [f"{name}.presence.example.test" for name in interpreters]
        self.prosody = Prosody(modules=("webpresence",), loglevel="warn",
                               component=components[0], otherComponents=tuple(components[1:]))
        self.user = f"bench@{self.prosody.domain}"
        self.fan = f"fan@{self.prosody.domain}"
        self.presenced = {name: Presenced(name, self.prosody, component, work)
                          for name, component in zip(interpreters, components)}
        self.startSeconds: dict[str, float] = {}

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **{"env": environment(), **kwargs})
        self.processes.append(process)
        return process

    def start(self) -> None:
        self.prosody.start()
        for name in ("bench", "fan"):
            self.prosody.register(name, PASSWORD)
        self.prosodyPid = int((self.prosody.directory / "prosody.pid").read_text())
        online = self.spawn([sys.executable, str(HERE / "online.py"), str(self.prosody.c2sPort),
                             self.user, self.fan, PASSWORD], stdout=subprocess.PIPE, text=True)
        if online.stdout.readline().strip() != "ready":
            raise RuntimeError("the benchmark users did not come online")
        for name, presenced in self.presenced.items():
            self.startSeconds[name] = presenced.start(self.spawn)

        self.png = defaultImageDirectory() / "away.png"
        self.bare = {}
        for name in self.presenced:
            port = freePort()
            runtime = RUNTIMES[name]
            self.bare[name] = (port, self.spawn([runtime.executable("python"), str(HERE / "bare_twisted.py"),
                                                 str(port), str(self.png)], env=runtime.environment()))
        self.nginxPort = freePort()
        self.nginx = self.spawn(["nginx", "-c", str(self._nginxConfig()), "-p", str(self.work)])
        for port in [self.nginxPort, *(port for port, _ in self.bare.values())]:
            waitForPort(port, 30)

    def reload(self, public: bool, accessLog: bool = False, metrics: bool = True) -> None:
        """
        Change every presenced's settings.
        """
        for presenced in self.presenced.values():
            presenced.reload(public, accessLog, metrics)

    def _nginxConfig(self) -> Path:
        root = self.work / "static"
        root.mkdir()
        shutil.copy(self.png, root / "status.png")
        config = self.work / "nginx.conf"
        config.write_text(f"""
daemon off;
worker_processes 1;
pid {self.work}/nginx.pid;
error_log {self.work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{self.nginxPort};
        root {root};
        location / {{ default_type image/png; }}
    }}
}}
""")
        return config

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.prosody.cleanup()


def presencedURLs(presenced: Presenced, user: str, requester: str | None) -> dict[str, str]:
    """
    The URL of each answer type about C{user} on C{presenced}.
    """
    status = f"http://127.0.0.1:{presenced.port}/plugins/presence/status?jid={user}"
    if requester:
        status += f"&req_jid={requester}"
    return {"image": status, "text": status + "&type=text", "xml": status + "&type=xml"}


def endpoints(t: Targets, requester: str | None) -> dict[str, dict[str, tuple[str, int]]]:
    """
    For each answer type: every presenced's URL and mod_webpresence's
    matching one, by server name, with the server's pid.
    """
    webpresence = f"http://127.0.0.1:{t.prosody.httpPort}/status/{t.user}"
    theirs = {"image": webpresence, "text": webpresence + "/text", "xml": webpresence + "/xml"}
    ours = {name: presencedURLs(presenced, t.user, requester) for name, presenced in t.presenced.items()}
    return {
        kind: {**{f"presenced_{name}": (urls[kind], t.presenced[name].pid) for name, urls in ours.items()},
               "mod_webpresence": (theirs[kind], t.prosodyPid)}
        for kind in theirs
    }


def check(t: Targets, kind: str, servers: dict[str, tuple[str, int]]) -> None:
    """
    Every server answers about the same live user before it is loaded
    (mod_webpresence's image being its own icon, and its text the show).
    """
    ours = {"image": t.png.read_bytes(), "text": b"Benchmarking presence", "xml": b"<show>away</show>"}[kind]
    theirs = {"image": b"", "text": b"away", "xml": b"<show>away</show>"}[kind]
    for name, (url, _) in servers.items():
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = answer.read()
        if (theirs if name == "mod_webpresence" else ours) not in body:
            raise RuntimeError(f"{url} answered {body[:200]!r}, not the live user's {kind}")


def load(target: tuple, options, duration: int | None = None) -> dict:
    """
    wrk on one target: a URL, the pid of the server answering it, and
    any headers to send.
    """
    url, pid, *headers = target
    return wrk(url, pid, options, duration, tuple(headers))


def alternating(options, targets: dict[str, tuple]) -> dict[str, dict]:
    """
    Load each of C{targets} (name to URL, server pid and any headers, see
    L{load}) once a round, the order rotated every round (A B C, B C A,
    ...); the median of the rounds for each figure.  Each first gets
    C{--warm-up} seconds of load that are not measured, so that a JIT has
    compiled this path.
    """
    if options.warm_up:
        for target in targets.values():
            load(target, options, options.warm_up)
    runs = {name: [] for name in targets}
    order = list(targets.items())
    for round in range(options.rounds):
        shift = round % len(order)
        for name, target in order[shift:] + order[:shift]:
            runs[name].append(load(target, options))
    return {name: median(r) for name, r in runs.items()}


def ratios(result: dict, to: str, of: dict[str, str]) -> dict[str, dict[str, float]]:
    """
    For each key of C{of}: the requests per second and CPU per request of
    the server C{of[key]} in C{result}, divided by those of C{to}.
    """
    base = result[to]
    return {key: {"requests": result[name]["requests_per_second"] / base["requests_per_second"],
                  "cpu": result[name]["cpu_seconds_per_10k"] / base["cpu_seconds_per_10k"]}
            for key, name in of.items()}


def versus(t: Targets, options, servers: dict[str, tuple[str, int]]) -> dict:
    """
    Every presenced against mod_webpresence, alternating, with their
    ratios to it.
    """
    result = alternating(options, servers)
    result["ratios"] = ratios(result, "mod_webpresence", {name: f"presenced_{name}" for name in t.presenced})
    return result


def compare(t: Targets, options, requester: str | None) -> dict:
    """
    Every presenced versus mod_webpresence for each answer type.
    """
    results = {}
    for kind, servers in endpoints(t, requester).items():
        check(t, kind, servers)
        results[kind] = versus(t, options, servers)
    return results


def ceilings(t: Targets, options) -> dict:
    """
    Every presenced's public image answer against a bare twisted.web leaf
    on the same interpreter serving the same bytes, and nginx serving
    them as a static file, rotating.
    """
    servers = {}
    for name, presenced in t.presenced.items():
        servers[f"presenced_{name}"] = (presencedURLs(presenced, t.user, None)["image"], presenced.pid)
    for name, (port, process) in t.bare.items():
        servers[f"bare_twisted_web_{name}"] = (f"http://127.0.0.1:{port}/", process.pid)
    servers["nginx_static_png"] = (f"http://127.0.0.1:{t.nginxPort}/status.png", t.nginx.pid)
    result = alternating(options, servers)
    presenced = {name: f"presenced_{name}" for name in t.presenced}
    result["presenced_over_nginx"] = ratios(result, "nginx_static_png", presenced)
    result["presenced_over_bare_twisted_web"] = {
        name: ratios(result, f"bare_twisted_web_{name}", {name: f"presenced_{name}"})[name] for name in t.presenced
    }
    return result


#: What presenced keeps of each request, by name: the access log, the metrics.
OBSERVING = {"neither": (False, False), "metrics": (False, True), "access_log_and_metrics": (True, True)}


def observingCost(t: Targets, options) -> dict:
    """
    Every presenced's public image answer with neither the access log
    (written to a file) nor the metrics, with the metrics only (the
    default), and with both: each round reloads each setting in turn,
    the order rotated, and loads every presenced; the ratios are to
    neither.
    """
    image = {name: presencedURLs(presenced, t.user, None)["image"] for name, presenced in t.presenced.items()}
    runs = {(setting, name): [] for setting in OBSERVING for name in t.presenced}
    order = list(OBSERVING.items())
    for round in range(options.rounds):
        shift = round % len(order)
        for setting, (accessLog, metrics) in order[shift:] + order[:shift]:
            t.reload(public=True, accessLog=accessLog, metrics=metrics)
            for name, presenced in t.presenced.items():
                if round == 0 and options.warm_up:
                    wrk(image[name], presenced.pid, options, options.warm_up)
                runs[setting, name].append(wrk(image[name], presenced.pid, options))
    t.reload(public=True)
    for presenced in t.presenced.values():
        if not presenced.accessLog.stat().st_size:
            raise RuntimeError(f"presenced on {presenced.interpreter} wrote no access log")
    result = {name: {setting: median(runs[setting, name]) for setting in OBSERVING} for name in t.presenced}
    for name, row in result.items():
        row["ratios"] = ratios(row, "neither", {setting: setting for setting in OBSERVING if setting != "neither"})
    return result


def webAPI(t: Targets, options) -> dict:
    """
    On every presenced, public: the newer answers against C{type=text}
    in the same rotation -- C{type=json}, C{type=svg}, C{statuses} for 20
    users, the image, and the image revalidated with its C{ETag} (C{304}).
    """
    batch = "&".join(f"jid={user}" for user in [t.user, t.fan, *(f"user{n}@{t.prosody.domain}" for n in range(18))])
    result = {}
    for name, presenced in t.presenced.items():
        base = f"http://127.0.0.1:{presenced.port}/plugins/presence"
        status = f"{base}/status?jid={t.user}"
        with urllib.request.urlopen(status, timeout=10) as answer:
            etag = answer.headers["ETag"]
        checks = {f"{status}&type=json": b'"status": "Benchmarking presence"',
                  f"{status}&type=svg": b"bench: Away", f"{base}/statuses?{batch}": b'"user17@'}
        for url, expected in checks.items():
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = answer.read()
            if expected not in body.replace(b'":"', b'": "'):
                raise RuntimeError(f"{url} answered {body[:300]!r}")
        pid = presenced.pid
        row = alternating(options, {
            "text": (f"{status}&type=text", pid), "json": (f"{status}&type=json", pid),
            "svg": (f"{status}&type=svg", pid), "statuses_20_users": (f"{base}/statuses?{batch}", pid),
            "image": (status, pid), "image_304": (status, pid, f"If-None-Match: {etag}"),
        })
        row["ratios"] = ratios(row, "text", {kind: kind for kind in ("json", "svg", "statuses_20_users", "image")})
        row["ratios"]["image_304_over_image"] = ratios(row, "image", {"image_304": "image_304"})["image_304"]
        result[name] = row
    return result


def warmUp(t: Targets, options) -> dict:
    """
    How a fresh presenced's public image answer gets up to speed on each
    interpreter, one after the other: C{--warm-up-study} runs of wrk, one
    second each, from the first request on.

    The steady rate is the median of the last third of the runs; the
    figures say after how many seconds and requests the first run
    reached 90% of it.
    """
    results = {}
    for name, presenced in t.presenced.items():
        url, pid = presencedURLs(presenced, t.user, None)["image"], presenced.pid
        runs = [wrk(url, pid, options, 1) for _ in range(options.warm_up_study)]
        steady = statistics.median(run["requests_per_second"] for run in runs[-max(1, len(runs) // 3):])
        first = next(i for i, run in enumerate(runs) if run["requests_per_second"] >= 0.9 * steady)
        results[name] = {
            "requests_per_second_by_second": [run["requests_per_second"] for run in runs],
            "cpu_seconds_per_10k_by_second": [run["cpu_seconds_per_10k"] for run in runs],
            "steady_requests_per_second": steady,
            "first_second_over_steady": runs[0]["requests_per_second"] / steady,
            "seconds_to_90_percent": first,
            "requests_to_90_percent": sum(run["requests"] for run in runs[:first]),
        }
    return results


def scale(options, interpreters: list[str]) -> dict:
    """
    On each interpreter: ingestion rate (and ingestion taken apart),
    memory per user, and HTTP throughput by users tracked.
    """
    script = str(HERE / "scale.py")

    def measure(interpreter: str, *args: str) -> dict:
        runtime = RUNTIMES[interpreter]
        out = subprocess.run([runtime.executable("python"), script, *args], env=runtime.environment(),
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    ingestion = {(name, store): [] for name in interpreters for store in ("off", "store")}
    order = list(ingestion)
    for round in range(options.rounds):
        shift = round % len(order)
        for name, store in order[shift:] + order[:shift]:
            ingestion[name, store].append(measure(name, "ingest", str(options.ingest_users),
                                                  *(["store"] if store == "store" else [])))
    result = {
        "ingest": {name: median(ingestion[name, "off"]) for name in interpreters},
        "ingest_with_store": {name: median(ingestion[name, "store"]) for name in interpreters},
        "ingest_store_over_off": {
            name: statistics.median(run["stanzas_per_second"] for run in ingestion[name, "store"])
            / statistics.median(run["stanzas_per_second"] for run in ingestion[name, "off"])
            for name in interpreters},
        "ingest_layers": {name: measure(name, "layers", str(options.ingest_users)) for name in interpreters},
        "memory": {name: {str(users): measure(name, "memory", str(users)) for users in options.memory_users}
                   for name in interpreters},
    }
    sizes = (options.http_users_small, options.http_users_large)
    servers = {}
    try:
        for name in interpreters:
            for users in sizes:
                port = freePort()
                runtime = RUNTIMES[name]
                server = subprocess.Popen([runtime.executable("python"), script, "serve", str(users), str(port)],
                                          env=runtime.environment(), stdout=subprocess.PIPE, text=True)
                url = f"http://127.0.0.1:{port}/plugins/presence/status?jid=user{users // 2}@example.test"
                servers[f"{name}_{users}"] = (url, server)
                if server.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"scale server on {name} did not start")
        result["http_by_users"] = alternating(options, {key: (url, server.pid)
                                                        for key, (url, server) in servers.items()})
    finally:
        for _, server in servers.values():
            server.terminate()
            server.wait(30)
    result["http_large_over_small"] = {
        name: ratios(result["http_by_users"], f"{name}_{sizes[0]}", {name: f"{name}_{sizes[1]}"})[name]["requests"]
        for name in interpreters
    }
    return result


def streams(options, interpreters: list[str]) -> dict:
    """
    On each interpreter, C{bench/streams.py}: C{--streams} open event
    streams, their memory, one change fanned out to C{--fanout} of them,
    and image answers with and without the streams open.
    """
    result = {}
    for name in interpreters:
        runtime = RUNTIMES[name]
        out = subprocess.run([runtime.executable("python"), str(HERE / "streams.py"),
                              "--streams", str(options.streams), "--fanout", str(options.fanout),
                              "--rounds", str(options.rounds), "--duration", str(options.duration),
                              "--interpreter", runtime.executable("python")],
                             env=runtime.environment(), capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"bench/streams.py on {name} failed:\n{out.stderr[-3000:]}")
        result[name] = json.loads(out.stdout)
    return result


def interpreterVersion(interpreter: str) -> str:
    """
    What C{interpreter} runs: implementation, versions, Twisted, and the
    variables it is given.
    """
    runtime = RUNTIMES[interpreter]
    version = subprocess.run(
        [runtime.executable("python"), "-c",
         "import sys, twisted; print(sys.version.replace(chr(10), ' '), '/ Twisted', twisted.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return " ".join([version, *(f"{name}={value}" for name, value in runtime.variables)])


def machine(interpreters: list[str]) -> dict:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        memory = f.readline().split()[1]
    return {
        "cpu": model, "cores": os.cpu_count(), "memory_kib": int(memory),
        "kernel": platform.release(),
        "interpreters": {name: interpreterVersion(name) for name in interpreters},
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip()
                if shutil.which("wrk") else "not installed"),
    }


def _figure(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _row(label: str, name: str, r: dict) -> str:
    return (f"{label:<24}{name:<26}{r['requests_per_second']:>9.0f}"
            f"{_figure(r['p50_ms'], 9, 2)}{_figure(r['p99_ms'], 9, 2)}{r['cpu_seconds_per_10k']:>11.3f}")


def _rows(lines: list[str], label: str, row: dict) -> None:
    for name, r in row.items():
        if name != "ratios":
            lines.append(_row(label, name, r))
    for name, ratio in row["ratios"].items():
        lines.append(f"{'':<24}{'ratio ' + name:<26}{ratio['requests']:>9.2f}{'':>18}{ratio['cpu']:>11.2f}")


def table(results: dict) -> str:
    """
    The figures of C{results} as text, those of each section that ran.
    """
    interpreters = list(results["machine"]["interpreters"])
    lines = [f"{'endpoint':<24}{'server':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU s/10k':>11}"]
    for mode in ("public", "subscribers_only"):
        for kind, row in results.get(mode, {}).items():
            _rows(lines, f"{mode} {kind}", row)
    for name, row in results.get("web_api", {}).items():
        _rows(lines, f"web API on {name}", row)
    for name, row in results.get("observing", {}).items():
        _rows(lines, f"log/metrics on {name}", row)
    if "ceilings" in results:
        c = results["ceilings"]
        for name, r in c.items():
            if not name.startswith("presenced_over"):
                lines.append(_row("ceiling", name, r))
        for name in interpreters:
            lines.append(f"presenced image on {name}: {c['presenced_over_bare_twisted_web'][name]['requests']:.2f}"
                         f" of bare twisted.web, {c['presenced_over_nginx'][name]['requests']:.2f} of nginx")
    for name, w in results.get("warm_up", {}).items():
        lines.append(f"warm-up on {name}: steady {w['steady_requests_per_second']:.0f} req/s, first second at "
                     f"{w['first_second_over_steady']:.2f} of it, 90% after {w['seconds_to_90_percent']} s "
                     f"({w['requests_to_90_percent']:,} requests); started in {results['start_seconds'][name]:.1f} s")
    s = results.get("scale")
    if s:
        for name in interpreters:
            lines.append(f"ingestion on {name}: {s['ingest'][name]['stanzas_per_second']:.0f} presence stanzas/s, "
                         f"{s['ingest_with_store'][name]['stanzas_per_second']:.0f} with the store "
                         f"({s['ingest_store_over_off'][name]:.2f} of it; the store's thread then wrote "
                         f"{s['ingest_with_store'][name]['stored_users']:,} users in "
                         f"{s['ingest_with_store'][name]['store_write_seconds']:.3f} s)")
            for layer, timing in s["ingest_layers"][name].items():
                if layer != "stanzas":
                    lines.append(f"    {layer:<48}{timing['first_us_per_stanza']:>7.1f} µs/stanza first pass,"
                                 f"{timing['best_us_per_stanza']:>7.1f} best")
            for users, m in s["memory"][name].items():
                lines.append(f"memory on {name} at {int(users):>9,} users: {m['bytes_per_user']:.0f} B per user "
                             "(RSS delta)")
        for key, r in s["http_by_users"].items():
            lines.append(f"image req/s, {key.replace('_', ' with ')} users tracked: {r['requests_per_second']:.0f}")
        for name, ratio in s["http_large_over_small"].items():
            lines.append(f"large / small on {name}: {ratio:.2f}")
    for name, r in results.get("streams", {}).items():
        lines.append(f"streams on {name}: {r['streams']:,} open in {r['seconds_to_open']} s, "
                     f"{r['rss_bytes_per_stream']:,} B RSS each; one change to {r['fanout']:,} streams: "
                     f"p50 {r['fanout_latency_ms']['p50']} ms, p99 {r['fanout_latency_ms']['p99']} ms, "
                     f"max {r['fanout_latency_ms']['max']} ms; image req/s {r['image_rps_with_streams']:.0f} with "
                     f"them open, {r['image_rps_without_streams']:.0f} without ({r['image_ratio']:.2f})")
    load = results["load_average"]
    lines.append(f"load average: {load['before']} before, {load.get('after', '?')} after")
    return "\n".join(lines)


#: The sections of the benchmark, in the order they run.
SECTIONS = ("warm_up", "public", "ceilings", "web_api", "observing", "subscribers_only", "scale", "streams")


def main() -> None:
    available = [name for name, runtime in RUNTIMES.items() if Path(runtime.executable("twistd")).exists()]
    parser = argparse.ArgumentParser(description="Benchmark presenced on this machine.")
    parser.add_argument("--interpreters", nargs="+", choices=list(RUNTIMES), default=available,
                        help="run presenced on these (default: each whose virtualenv exists: "
                             f"{' '.join(available)})")
    parser.add_argument("--pypy-gc-nursery", nargs="+", default=[], metavar="SIZE",
                        help="also run presenced on PyPy with each of these PYPY_GC_NURSERY sizes, e.g. 16MB")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these parts of the benchmark (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warm-up", type=int, default=5,
                        help="seconds of unmeasured load on each server before each comparison (0: none)")
    parser.add_argument("--warm-up-study", type=int, default=30,
                        help="one-second runs measuring how a fresh presenced gets up to speed")
    parser.add_argument("--ingest-users", type=int, default=100_000)
    parser.add_argument("--memory-users", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--http-users-small", type=int, default=1_000)
    parser.add_argument("--http-users-large", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, default=10_000, help="event streams open at once")
    parser.add_argument("--fanout", type=int, default=1_000, help="streams following the user who changes")
    parser.add_argument("--verbose", action="store_true", help="show every wrk report")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json")
    options = parser.parse_args()
    if options.http_users_small >= options.http_users_large:
        parser.error("--http-users-small must be less than --http-users-large")
    for size in options.pypy_gc_nursery:
        if not re.fullmatch(r"\d+[KMG]B", size):
            parser.error(f"--pypy-gc-nursery {size}: a size such as 4MB")
        name = f"pypy-nursery-{size.lower()}"
        RUNTIMES[name] = Runtime(RUNTIMES["pypy"].virtualenv, (("PYPY_GC_NURSERY", size),))
        options.interpreters.append(name)
    for name in options.interpreters:
        if not Path(RUNTIMES[name].executable("twistd")).exists():
            parser.error(f"{RUNTIMES[name].virtualenv} has no twistd "
                         f"(scripts/setup{'' if name == 'cpython' else ' --pypy'})")
    if options.warm_up_study < 3:
        parser.error("--warm-up-study needs at least 3 runs")
    interpreters = list(dict.fromkeys(options.interpreters))
    sections = set(options.sections)

    started = time.time()
    results = {"machine": machine(interpreters), "command": " ".join(["scripts/bench", *sys.argv[1:]]),
               "settings": {"wrk": f"-t1 -c{options.connections} -d{options.duration}s --latency, keep-alive",
                            "rounds": options.rounds, "warm_up_seconds": options.warm_up,
                            "presenced_access_log": "off (the default)", "mod_webpresence_log_level": "warn"},
               "load_average": {"before": loadAverage()}}
    options.output.parent.mkdir(parents=True, exist_ok=True)

    def record(section: str, figures) -> None:
        results[section] = figures
        results["seconds"] = time.time() - started
        options.output.write_text(json.dumps(results, indent=2))

    http = [section for section in SECTIONS[:6] if section in sections]
    if http:
        work = Path(tempfile.mkdtemp(prefix="presenced-bench-"))
        work.chmod(0o755)  # nginx's worker runs as an unprivileged account
        targets = Targets(work, interpreters)
        measures = {
            "warm_up": lambda: warmUp(targets, options),
            "public": lambda: compare(targets, options, requester=None),
            "ceilings": lambda: ceilings(targets, options),
            "web_api": lambda: webAPI(targets, options),
            "observing": lambda: observingCost(targets, options),
            "subscribers_only": lambda: (targets.reload(public=False),
                                         compare(targets, options, requester=targets.fan))[1],
        }
        try:
            targets.start()
            record("start_seconds", targets.startSeconds)
            for section in http:
                record(section, measures[section]())
            results["load_average"]["after_http"] = loadAverage()
        finally:
            targets.stop()
            shutil.rmtree(work, ignore_errors=True)
    if "scale" in sections:
        record("scale", scale(options, interpreters))
    if "streams" in sections:
        record("streams", streams(options, [name for name in interpreters if name in ("cpython", "pypy")]))
    results["load_average"]["after"] = loadAverage()
    record("seconds", time.time() - started)
    print(table(results))
    print(f"\nwritten to {options.output}")


if __name__ == "__main__":
    main()
