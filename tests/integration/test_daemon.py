"""
presenced run as a daemon: real twistd processes, real signals, the init
script and the systemd unit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import stat
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.internet.error import ConnectionRefusedError
from twisted.web.client import readBody

from presenced.sandbox.certificates import selfSigned, servedCertificate
from presenced.sandbox.demo import writeSettings
from presenced.sandbox.prosody import freePort, waitForPort

from conftest import until
from test_twistd import ROOT, twistd


class Daemon:
    """
    C{twistd -n presenced} in a process of its own, with its log in a file.
    """

    def __init__(self, world, directory: Path) -> None:
        self.world = world
        self.settings = directory / "presenced.ini"
        self.logFile = directory / "presenced.log"
        self.process = None

    def write(self, **keys) -> None:
        extra = "\n".join(f"{k} = {v}" for k, v in keys.pop("presence", {}).items())
        self.settings.write_text(self.world.settings(extra=extra, **keys))

    def log(self) -> str:
        return self.logFile.read_text() if self.logFile.exists() else ""

    def launch(self, *options: str, **popen) -> None:
        """
        Start twistd, with C{options} of its own.
        """
        self.process = twistd("--nodaemon", "--pidfile=", f"--logfile={self.logFile}", *options,
                              "presenced", "-c", str(self.settings), **popen)

    async def start(self, *options: str) -> None:
        """
        Start twistd, with C{options} of its own, and wait for the link.
        """
        self.launch(*options)
        await until(lambda: "Connected to the XMPP server" in self.log(), timeout=30)

    async def reload(self) -> None:
        """
        Send SIGHUP and wait until the reload is done or aborted.
        """
        before = self.log().count("Reload done") + self.log().count("Reload aborted")
        self.process.send_signal(signal.SIGHUP)
        await until(lambda: self.log().count("Reload done") + self.log().count("Reload aborted") > before)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=30)


@pytest.fixture
def daemon(world, tmp_path):
    d = Daemon(world, tmp_path)
    yield d
    d.stop()


@pytest_twisted.ensureDeferred
async def test_sighupAppliesNewSettings(world, daemon):
    """
    SIGHUP applies changed settings in the same process, without dropping
    the XMPP link.
    """
    user = world.user("hup")
    client = await world.login(user)
    client.available(show="away")
    daemon.write(public=True)
    await daemon.start()
    await world.waitForText(f"jid={user}", "Away")

    daemon.write(public=True, presence={"away_status": "Out for a walk", "unavailable_status": "Gone"})
    await daemon.reload()
    assert daemon.process.poll() is None
    assert await world.text(f"jid={user}") == "Out for a walk"
    assert await world.text(f"jid=nobody@{world.server.domain}") == "Gone"
    assert daemon.log().count("Connected to the XMPP server") == 1
    assert "changed: presence.labels" in daemon.log()

    daemon.write(public=False)
    await daemon.reload()
    assert await world.text(f"jid={user}") == "Forbidden"
    assert await world.text(f"jid={user}&req_jid={user}") == "Away"


@pytest_twisted.ensureDeferred
async def test_badReloadKeepsOldSettings(world, daemon):
    """
    A SIGHUP with a broken file logs every error and keeps serving with
    the old settings.
    """
    daemon.write(public=True)
    await daemon.start()
    daemon.settings.write_text(daemon.settings.read_text().replace("public = true", "public = perhaps")
                               + "[surprise]\n")
    await daemon.reload()
    log = daemon.log()
    assert "Reload aborted: the configuration has errors; nothing was changed" in log
    assert f"{daemon.settings} [presence] public: not a boolean" in log
    assert f"{daemon.settings} [surprise]: unknown section" in log
    assert await world.text(f"jid=nobody@{world.server.domain}") == "Unavailable"
    assert daemon.process.poll() is None


@pytest_twisted.ensureDeferred
async def test_reloadRebindsListener(world, daemon):
    """
    A changed listen moves the HTTP service to the new port, and the old
    port refuses connections.
    """
    daemon.write(public=True)
    await daemon.start()
    oldPort = world.port
    world.port = freePort()
    daemon.write(public=True)
    await daemon.reload()
    assert await world.text(f"jid=nobody@{world.server.domain}") == "Unavailable"
    world.port = oldPort
    with pytest.raises(ConnectionRefusedError):
        await world.text(f"jid=nobody@{world.server.domain}")


@pytest_twisted.ensureDeferred
async def test_healthAndReconnectAcrossServerRestart(fresh_world):
    """
    When Prosody stops, users are no longer shown online (with the status
    the server gave their going offline, if it did so in time) and health
    turns 503; when it is back, presenced reconnects by itself, health turns 200
    and a user who logs in again is shown.
    """
    world = fresh_world
    user = world.user("restart")
    await world.start()
    client = await world.login(user)
    client.available(status="Before")
    await world.waitForText(f"jid={user}", "Before")
    answer = await health_of(world)
    assert answer[0] == 200 and answer[1]["xmpp"] == "connected" and answer[1]["users_online"] >= 1

    world.server.stop()
    await until(lambda: not world.service.link.connected)
    assert "type='unavailable'" in (await world.get(f"jid={user}&type=xml")).body.decode()
    code, body = await health_of(world)
    assert (code, body["xmpp"], body["users_online"]) == (503, "disconnected", 0)

    world.server.start()
    await until(lambda: world.service.link.connected, timeout=20)
    assert (await health_of(world))[0] == 200
    again = await world.login(user, "again")
    again.available(status="After")
    await world.waitForText(f"jid={user}", "After")


async def health_of(world) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{world.port}/plugins/presence/health".encode()
    response = await world.agent.request(b"GET", url)
    return response.code, json.loads(await readBody(response))


@pytest_twisted.ensureDeferred
async def test_readyForSystemdOnceHangupReloads(daemon, tmp_path):
    """
    Under systemd (Type=notify), twistd presenced reports READY=1 once it
    runs (systemd sends no reload before that); a SIGHUP right after it
    reloads the settings.
    """
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    daemon.write(public=True)
    daemon.launch(env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")})
    notified = []

    def ready() -> bool:
        try:
            notified.append(systemd.recv(100))
        except BlockingIOError:
            pass
        return bool(notified)

    await until(ready, timeout=30)
    assert notified == [b"READY=1"]
    await daemon.reload()
    assert "Reload done" in daemon.log()
    assert daemon.process.poll() is None
    systemd.close()


def test_initScriptStartStatusReloadStop(prosody, tmp_path):
    """
    The LSB init script starts twistd in the background, which binds a
    port below 1024 and runs as the configured account (in the state
    directory it gives that account, the store); it reports its status,
    reloads it with SIGHUP and stops it.
    """
    if os.geteuid() != 0:
        pytest.skip("the init script runs as root")
    port = freePrivilegedPort()
    settings = writeSettings(prosody, port, public=True)
    settings.parent.chmod(0o755)
    pidfile, logfile = settings.parent / "run" / "presenced.pid", settings.parent / "log" / "presenced.log"
    defaults = tmp_path / "defaults"
    defaults.write_text(
        f"TWISTD={Path(sys.executable).with_name('twistd')}\n"
        f"CONFIG={settings}\nPIDFILE={pidfile}\nLOGFILE={logfile}\nSTATEDIR={settings.parent / 'state'}\n"
        "RUN_USER=nobody\nRUN_GROUP=nogroup\n"
        # A limit that this machine allows, unlike perhaps the default.
        "OPEN_FILES=4096\n"
        f"TWISTD_ENV=PYTHONPATH={ROOT}\n"
    )
    script = ROOT / "etc" / "init.d" / "presenced"
    env = {**os.environ, "PRESENCED_DEFAULTS": str(defaults)}

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(script), action], env=env, capture_output=True, text=True, timeout=60)

    assert run("status").returncode == 3
    try:
        started = run("start")
        assert started.returncode == 0, started.stdout + started.stderr
        waitForPort(port, 30)
        pid = int(pidfile.read_text())
        openFiles = [line.split()[3:5] for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                     if line.startswith("Max open files")]
        assert openFiles == [["4096", "4096"]]
        assert Path(f"/proc/{pid}").stat().st_uid == NOBODY
        status = run("status")
        assert (status.returncode, f"pid {pid}" in status.stdout) == (0, True)

        settings.write_text(settings.read_text().replace("Not online", "Reloaded by init"))
        assert run("reload").returncode == 0
        url = f"http://127.0.0.1:{port}/plugins/presence/status?jid=nobody@{prosody.domain}&type=text"
        for _ in range(100):
            with urllib.request.urlopen(url, timeout=10) as answer:
                if answer.read() == b"Reloaded by init":
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("reload not applied")
        assert int(pidfile.read_text()) == pid
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0
    assert run("status").returncode == 3
    assert "Server Shut Down." in logfile.read_text()
    assert (settings.parent / "state" / "presence.sqlite").stat().st_uid == NOBODY
    shutil.rmtree(settings.parent)


def test_systemdUnitVerifies(tmp_path):
    """
    The systemd unit passes systemd-analyze verify (with ExecStart pointed
    at this environment's twistd).
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    unit = (ROOT / "etc" / "systemd" / "presenced.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "LimitNOFILE=65536" in unit.splitlines()
    local = tmp_path / "presenced.service"
    local.write_text(unit.replace("/usr/local/bin/twistd", str(Path(sys.executable).with_name("twistd"))))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


NOBODY = 65534
AS_NOBODY = (f"--uid={NOBODY}", f"--gid={NOBODY}")


def freePrivilegedPort() -> int:
    for port in random.sample(range(600, 1024), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


@pytest.fixture
def nobodyDaemon(world):
    """
    A daemon to start as root with C{--uid}/C{--gid} of nobody (L{AS_NOBODY}),
    its files in a directory the nobody account can enter, with a C{log}
    directory it owns.

    The interpreter may live where nobody cannot read (here, under /root):
    the daemon then works only if it imports nothing new after the drop,
    which these tests check on the way.
    """
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    directory = Path(tempfile.mkdtemp(prefix="presenced-nobody-"))
    directory.chmod(0o755)
    (directory / "log").mkdir()
    os.chown(directory / "log", NOBODY, NOBODY)
    d = Daemon(world, directory)
    yield d
    d.stop()
    shutil.rmtree(directory)


def fetchText(url: str, cafile: Path) -> str:
    with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=str(cafile)), timeout=10) as answer:
        return answer.read().decode()


def readableByNobody(*paths: Path) -> None:
    for path in paths:
        os.chown(path, 0, NOBODY)
        path.chmod(0o640)


@pytest_twisted.ensureDeferred
async def test_tlsPortOutlivesRenewalsAfterPrivilegeDrop(world, nobodyDaemon):
    """
    Started as root on a port below 1024 and run as nobody, the daemon
    keeps that TLS port across reloads: a renewed certificate is served
    from the next connection on; an invalid one, or one whose key that
    account cannot read, fails the reload and the one before is still
    served.
    """
    daemon = nobodyDaemon
    port = freePrivilegedPort()
    url = f"https://localhost:{port}/plugins/presence/status?jid=nobody@{world.server.domain}&type=text"
    cert, key = selfSigned("localhost", daemon.settings.parent)
    daemon.write()
    daemon.settings.write_text(daemon.settings.read_text().replace(
        f"listen = tcp:{world.port}:interface=127.0.0.1",
        f"listen = ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"))
    readableByNobody(daemon.settings, cert, key)
    await daemon.start(*AS_NOBODY)

    def served() -> str:
        return servedCertificate("127.0.0.1", port).strip()

    assert await threads.deferToThread(served) == cert.read_text().strip()
    assert await threads.deferToThread(fetchText, url, cert) == "Unavailable"
    selfSigned("localhost", daemon.settings.parent)
    await daemon.reload()
    renewed = cert.read_text().strip()
    assert await threads.deferToThread(served) == renewed
    assert f"Certificate of ssl:{port}" in daemon.log()
    assert await threads.deferToThread(fetchText, url, cert) == "Unavailable"

    cert.write_text("not a certificate")
    await daemon.reload()
    assert daemon.log().count("Reload aborted") == 1
    assert await threads.deferToThread(served) == renewed

    selfSigned("localhost", daemon.settings.parent)
    key.chmod(0o600)
    await daemon.reload()
    assert daemon.log().count("Reload aborted") == 2
    assert f"Permission denied: '{key}'" in daemon.log()
    assert await threads.deferToThread(served) == renewed
    assert daemon.process.poll() is None


@pytest_twisted.ensureDeferred
async def test_accessLogBelongsToRunAccount(world, nobodyDaemon):
    """
    Started as root and run as nobody, the daemon creates its access log as
    nobody, readable by owner and group only; SIGHUP reopens it, and after
    a rename (as logrotate does) creates the next one the same way.
    """
    daemon = nobodyDaemon
    accessLog = daemon.settings.parent / "log" / "access.log"
    daemon.write()
    daemon.settings.write_text(daemon.settings.read_text().replace("[http]\n", f"[http]\naccess_log = {accessLog}\n"))
    readableByNobody(daemon.settings)
    await daemon.start(*AS_NOBODY)

    async def logged(path: Path, user: str) -> None:
        await world.text(f"jid={user}@{world.server.domain}")
        await until(lambda: path.exists() and f"jid={user}@" in path.read_text())
        status = path.stat()
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (NOBODY, NOBODY, 0o640)

    await logged(accessLog, "first")
    await daemon.reload()
    await logged(accessLog, "second")
    accessLog.rename(accessLog.with_name("access.log.1"))
    await daemon.reload()
    await logged(accessLog, "third")
    assert "Reload aborted" not in daemon.log()
    assert "jid=first@" not in accessLog.read_text()
    assert "jid=second@" in accessLog.with_name("access.log.1").read_text()


async def restart(daemon, *options: str) -> None:
    """
    Stop twistd as an administrator would (SIGTERM), start it again with
    C{options} of its own and wait for its link.
    """
    connected = daemon.log().count("Connected to the XMPP server")
    daemon.stop()
    assert daemon.process.returncode == -signal.SIGTERM
    daemon.launch(*options)
    await until(lambda: daemon.log().count("Connected to the XMPP server") > connected, timeout=30)


@pytest_twisted.ensureDeferred
async def test_storeKeepsOfflineStatusAcrossRestart(world, daemon, tmp_path):
    """
    With a store, what a user said logging out is still the offline answer
    after twistd is restarted, before they are back.
    """
    store = tmp_path / "presence.sqlite"
    user = world.user("store")
    client = await world.login(user)
    client.available(status="Here")
    daemon.write(public=True, presence={"store": store})
    await daemon.start()
    await world.waitForText(f"jid={user}", "Here")
    client.unavailable(status="Gone fishing")
    await world.waitForText(f"jid={user}", "Gone fishing")

    await restart(daemon)
    assert f"Restored 1 offline users from the store {store}" in daemon.log()
    assert await world.text(f"jid={user}") == "Gone fishing"
    xml = (await world.get(f"jid={user}&type=xml")).body.decode()
    assert "type='unavailable'" in xml and "<status>Gone fishing</status>" in xml


@pytest_twisted.ensureDeferred
async def test_storeKeepsLastSeenAcrossRestart(world, tmp_path):
    """
    When a user was last seen, as the model knows it, is known again after
    presenced is restarted with its store.
    """
    store = tmp_path / "presence.sqlite"
    user = world.user("seen")
    await world.start(extra=f"store = {store}")
    client = await world.login(user)
    client.available()
    await world.waitForText(f"jid={user}", "Available")
    client.unavailable()
    await until(lambda: world.service.tracker.shown(user).lastSeen is not None)
    lastSeen = world.service.tracker.shown(user).lastSeen
    await world.service.stopService()
    await until(lambda: not world.service.link.connected)

    await world.start(extra=f"store = {store}")
    assert world.service.tracker.shown(user).lastSeen == lastSeen


def test_unusableStoreRefusesToStart(world, daemon, tmp_path):
    """
    twistd exits at once when the store is not an SQLite database, with
    an error naming the file, and no traceback.
    """
    store = tmp_path / "presence.sqlite"
    store.write_text("Not a database. " * 20)
    daemon.write(presence={"store": store})
    daemon.launch()
    daemon.process.communicate(timeout=60)
    assert daemon.process.returncode == 1
    assert f"presenced: refusing to start: cannot use the store {store}: not an SQLite database" in daemon.log()
    assert "Traceback" not in daemon.log()
    assert "Connected to the XMPP server" not in daemon.log()


@pytest_twisted.ensureDeferred
async def test_storeBelongsToRunAccount(world, nobodyDaemon):
    """
    Started as root and run as nobody, the daemon creates its store as
    nobody, readable by owner and group only, and keeps what it holds
    across a restart; a store that account may not write refuses the
    start.
    """
    daemon = nobodyDaemon
    state = daemon.settings.parent / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    store = state / "presence.sqlite"
    daemon.write(presence={"store": store})
    readableByNobody(daemon.settings)
    await daemon.start(*AS_NOBODY)
    status = store.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (NOBODY, NOBODY, 0o640)
    user = world.user("nobody")
    client = await world.login(user)
    client.unavailable(status="Written as nobody")
    await world.waitForText(f"jid={user}", "Written as nobody")

    await restart(daemon, *AS_NOBODY)
    assert await world.text(f"jid={user}") == "Written as nobody"

    daemon.stop()
    os.chown(store, 0, 0)
    daemon.launch(*AS_NOBODY)
    daemon.process.communicate(timeout=60)
    assert daemon.process.returncode == 1
    assert f"cannot use the store {store}: Permission denied" in daemon.log()
