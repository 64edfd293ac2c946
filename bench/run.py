"""
Benchmark presenced against Prosody's mod_webpresence, the bare twisted.web
ceiling and nginx, on this machine, over loopback, with wrk.

    scripts/bench [--rounds 3] [--duration 5] [--connections 32] [--output FILE]

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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from presenced.config import defaultImageDirectory  # noqa: E402
from presenced.sandbox.prosody import Prosody, freePort, waitForPort  # noqa: E402

PASSWORD = "bench-password"
TICKS = os.sysconf("SC_CLK_TCK")


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


def wrk(url: str, pid: int, options: argparse.Namespace) -> dict:
    """
    Load C{url} with wrk; measure the server process's CPU meanwhile.
    """
    before = cpuSeconds(pid)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{options.connections}", f"-d{options.duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    cpu = cpuSeconds(pid) - before
    if options.verbose:
        print(url, output, sep="\n", file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors for {url}:\n{output}")
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _milliseconds(re.search(r"^\s+50%\s+(\S+)$", output, re.MULTILINE).group(1)),
        "p99_ms": _milliseconds(re.search(r"^\s+99%\s+(\S+)$", output, re.MULTILINE).group(1)),
        "cpu_seconds_per_10k": cpu / requests * 10_000,
    }


def median(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


class Targets:
    """
    Every server under test, started on loopback.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen] = []
        self.prosody = Prosody(modules=("webpresence",), loglevel="warn")
        self.user = f"bench@{self.prosody.domain}"
        self.fan = f"fan@{self.prosody.domain}"

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, **kwargs)
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

        self.presencedPort = freePort()
        self.settings = self.work / "presenced.ini"
        self.accessLog = self.work / "access.log"
        self.writeSettings(public=True)
        self.presencedLog = self.work / "presenced.log"
        twistd = str(Path(sys.executable).with_name("twistd"))
        self.presenced = self.spawn([twistd, "--nodaemon", "--pidfile=", f"--logfile={self.presencedLog}",
                                     "presenced", "--config", str(self.settings)])
        self._waitForLog("Connected to the XMPP server")

        self.png = defaultImageDirectory() / "away.png"
        self.barePort = freePort()
        self.bare = self.spawn([sys.executable, str(HERE / "bare_twisted.py"), str(self.barePort), str(self.png)])
        self.nginxPort = freePort()
        self.nginx = self.spawn(["nginx", "-c", str(self._nginxConfig()), "-p", str(self.work)])
        for port in (self.presencedPort, self.barePort, self.nginxPort):
            waitForPort(port, 30)

    def writeSettings(self, public: bool, accessLog: bool = False) -> None:
        self.settings.write_text(f"""
[xmpp]
jid = {self.prosody.component}
secret = {self.prosody.secret}
port = {self.prosody.componentPort}
domain = {self.prosody.domain}

[http]
listen = tcp:{self.presencedPort}:interface=127.0.0.1
access_log = {self.accessLog if accessLog else "off"}

[presence]
public = {"true" if public else "false"}
roster_ttl = 86400
""")

    def reload(self, public: bool, accessLog: bool = False) -> None:
        """
        Change presenced's settings with SIGHUP.
        """
        done = self.presencedLog.read_text().count("Reload done")
        self.writeSettings(public, accessLog)
        self.presenced.send_signal(signal.SIGHUP)
        self._waitForLog("Reload done", done + 1)

    def _waitForLog(self, text: str, count: int = 1) -> None:
        for _ in range(600):
            if self.presencedLog.exists() and self.presencedLog.read_text().count(text) >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"presenced did not log {text!r}")

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


def endpoints(t: Targets, requester: str | None) -> dict[str, tuple[str, str]]:
    """
    For each answer type: the presenced URL and the matching mod_webpresence URL.
    """
    status = f"http://127.0.0.1:{t.presencedPort}/plugins/presence/status?jid={t.user}"
    if requester:
        status += f"&req_jid={requester}"
    webpresence = f"http://127.0.0.1:{t.prosody.httpPort}/status/{t.user}"
    return {
        "image": (status, webpresence),
        "text": (status + "&type=text", webpresence + "/text"),
        "xml": (status + "&type=xml", webpresence + "/xml"),
    }


def check(t: Targets, kind: str, ours: str, theirs: str) -> None:
    """
    Both services answer about the same live user before they are loaded.
    """
    def fetch(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.read()

    expected = {
        "image": (t.png.read_bytes(), None),
        "text": (b"Benchmarking presence", b"away"),
        "xml": (b"<show>away</show>", b"<show>away</show>"),
    }[kind]
    for url, wanted in zip((ours, theirs), expected):
        body = fetch(url)
        if wanted is not None and wanted not in body:
            raise RuntimeError(f"{url} answered {body[:200]!r}, not the live user's {kind}")


def alternating(options, targets: dict[str, tuple[str, int]]) -> dict[str, dict]:
    """
    Load each of C{targets} (name to URL and server pid) once a round, the
    order rotated every round (A B C, B C A, ...); the median of the rounds
    for each figure.
    """
    runs = {name: [] for name in targets}
    order = list(targets.items())
    for round in range(options.rounds):
        shift = round % len(order)
        for name, (url, pid) in order[shift:] + order[:shift]:
            runs[name].append(wrk(url, pid, options))
    return {name: median(r) for name, r in runs.items()}


def versus(t: Targets, options, ours: str, theirs: str) -> dict:
    """
    presenced at C{ours} against mod_webpresence at C{theirs}, alternating,
    with the ratios of their requests per second and CPU per request.
    """
    result = alternating(options, {"presenced": (ours, t.presenced.pid), "mod_webpresence": (theirs, t.prosodyPid)})
    result["ratio_requests"] = result["presenced"]["requests_per_second"] / result["mod_webpresence"]["requests_per_second"]
    result["ratio_cpu"] = result["presenced"]["cpu_seconds_per_10k"] / result["mod_webpresence"]["cpu_seconds_per_10k"]
    return result


def compare(t: Targets, options, requester: str | None) -> dict:
    """
    presenced versus mod_webpresence for each answer type.
    """
    results = {}
    for kind, (ours, theirs) in endpoints(t, requester).items():
        check(t, kind, ours, theirs)
        results[kind] = versus(t, options, ours, theirs)
    return results


def ceilings(t: Targets, options) -> dict:
    """
    presenced's public image answer against a bare twisted.web leaf serving
    the same bytes and nginx serving them as a static file, alternating.
    """
    image, _ = endpoints(t, None)["image"]
    result = alternating(options, {
        "presenced_image": (image, t.presenced.pid),
        "bare_twisted_web": (f"http://127.0.0.1:{t.barePort}/", t.bare.pid),
        "nginx_static_png": (f"http://127.0.0.1:{t.nginxPort}/status.png", t.nginx.pid),
    })
    result["presenced_image_over_bare_twisted_web"] = (
        result["presenced_image"]["requests_per_second"] / result["bare_twisted_web"]["requests_per_second"]
    )
    return result


def withAccessLog(t: Targets, options) -> dict:
    """
    presenced's public image answer with the access log written to a file,
    against mod_webpresence's.
    """
    t.reload(public=True, accessLog=True)
    result = versus(t, options, *endpoints(t, None)["image"])
    t.reload(public=True)
    if not t.accessLog.stat().st_size:
        raise RuntimeError("presenced wrote no access log")
    return result


def scale(options) -> dict:
    """
    Ingestion rate, memory per user, and HTTP throughput by users tracked.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(HERE / "scale.py")

    def measure(*args: str) -> dict:
        out = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    result = {"ingest": median([measure("ingest", str(options.ingest_users)) for _ in range(options.rounds)]),
              "memory": {}}
    for users in options.memory_users:
        result["memory"][str(users)] = measure("memory", str(users))
    servers = {}
    try:
        for users in (options.http_users_small, options.http_users_large):
            port = freePort()
            server = subprocess.Popen([sys.executable, script, "serve", str(users), str(port)], env=env,
                                      stdout=subprocess.PIPE, text=True)
            servers[str(users)] = (f"http://127.0.0.1:{port}/plugins/presence/status?jid=user{users // 2}@example.test",
                                   server)
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("scale server did not start")
        result["http_by_users"] = alternating(options, {users: (url, server.pid)
                                                        for users, (url, server) in servers.items()})
    finally:
        for _, server in servers.values():
            server.terminate()
            server.wait(30)
    small, large = (result["http_by_users"][str(n)]["requests_per_second"]
                    for n in (options.http_users_small, options.http_users_large))
    result["http_large_over_small"] = large / small
    return result


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        memory = f.readline().split()[1]
    return {
        "cpu": model, "cores": os.cpu_count(), "memory_kib": int(memory),
        "kernel": platform.release(), "python": platform.python_version(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
    }


def table(results: dict) -> str:
    lines = [
        f"{'endpoint':<24}{'server':<17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU s/10k':>11}",
    ]
    rows = [(f"{mode} {kind}", row) for mode in ("public", "subscribers_only") for kind, row in results[mode].items()]
    rows.append(("image, access log file", results["access_log_file"]))
    for label, row in rows:
        for name in ("presenced", "mod_webpresence"):
            r = row[name]
            lines.append(f"{label:<24}{name:<17}{r['requests_per_second']:>9.0f}"
                         f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['cpu_seconds_per_10k']:>11.3f}")
        lines.append(f"{'':<24}{'ratio':<17}{row['ratio_requests']:>9.2f}{'':>18}{row['ratio_cpu']:>11.2f}")
    for name in ("presenced_image", "bare_twisted_web", "nginx_static_png"):
        r = results["ceilings"][name]
        lines.append(f"{'ceiling':<24}{name:<17}{r['requests_per_second']:>9.0f}"
                     f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['cpu_seconds_per_10k']:>11.3f}")
    lines.append(f"presenced image / bare twisted.web: {results['ceilings']['presenced_image_over_bare_twisted_web']:.2f}")
    s = results["scale"]
    lines.append(f"ingestion: {s['ingest']['stanzas_per_second']:.0f} presence stanzas/s")
    for users, m in s["memory"].items():
        lines.append(f"memory at {int(users):>9,} users: {m['bytes_per_user']:.0f} B per user (RSS delta)")
    for users, r in s["http_by_users"].items():
        lines.append(f"image req/s with {int(users):>9,} users tracked: {r['requests_per_second']:.0f}")
    lines.append(f"large / small: {s['http_large_over_small']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark presenced on this machine.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ingest-users", type=int, default=100_000)
    parser.add_argument("--memory-users", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--http-users-small", type=int, default=1_000)
    parser.add_argument("--http-users-large", type=int, default=1_000_000)
    parser.add_argument("--verbose", action="store_true", help="show every wrk report")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json")
    options = parser.parse_args()
    if options.http_users_small >= options.http_users_large:
        parser.error("--http-users-small must be less than --http-users-large")

    work = Path(tempfile.mkdtemp(prefix="presenced-bench-"))
    work.chmod(0o755)  # nginx's worker runs as an unprivileged account
    targets = Targets(work)
    started = time.time()
    try:
        targets.start()
        results = {"machine": machine(), "command": " ".join(["scripts/bench", *sys.argv[1:]]),
                   "settings": {"wrk": f"-t1 -c{options.connections} -d{options.duration}s --latency, keep-alive",
                                "rounds": options.rounds, "presenced_access_log": "off (the default)",
                                "mod_webpresence_log_level": "warn"}}
        results["public"] = compare(targets, options, requester=None)
        results["ceilings"] = ceilings(targets, options)
        results["access_log_file"] = withAccessLog(targets, options)
        targets.reload(public=False)
        results["subscribers_only"] = compare(targets, options, requester=targets.fan)
    finally:
        targets.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["scale"] = scale(options)
    results["seconds"] = time.time() - started
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten to {options.output}")


if __name__ == "__main__":
    main()
