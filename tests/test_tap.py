"""
Tests for L{presenced.tap} and the twistd plugin.
"""

import os
import signal
import socket

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import getPlugins
from twisted.python import usage

from presenced import tap
from presenced.service import PresenceService

from webhelpers import Connection


@pytest.fixture(autouse=True)
def hangupAsBefore():
    """
    makeService installs presenced's SIGHUP handler: each test leaves the
    test process's handler as it found it.
    """
    previous = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, previous)


class ThreadCallReactor(MemoryReactorClock):
    """
    A memory reactor that keeps what C{callFromThread} is given until
    L{runThreadCalls}, as a real reactor does until its next iteration.
    """

    def __init__(self):
        super().__init__()
        self.threadCalls = []

    def callFromThread(self, f, *args, **kwargs):
        self.threadCalls.append((f, args, kwargs))

    def runThreadCalls(self):
        calls, self.threadCalls = self.threadCalls, []
        for f, args, kwargs in calls:
            f(*args, **kwargs)


def test_pluginIsFound():
    """
    twistd finds the presenced plugin, which builds its service with tap.
    """
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["presenced"].module == "presenced.tap"


def test_configIsRequired():
    """
    --config is required.
    """
    with pytest.raises(usage.UsageError, match="--config PATH is required"):
        tap.Options().parseOptions([])


def test_shortOption():
    """
    -c is short for --config.
    """
    options = tap.Options()
    options.parseOptions(["-c", "/etc/presenced/presenced.ini"])
    assert options["config"] == "/etc/presenced/presenced.ini"


def test_badConfigRefusesToStart(tmp_path):
    """
    A configuration with errors stops start-up with every problem listed.
    """
    path = tmp_path / "bad.ini"
    path.write_text("[xmpp]\nport = none\n[http]\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit) as caught:
        tap.makeService(options, task.Clock())
    message = str(caught.value)
    assert message.startswith("presenced: refusing to start")
    assert f"{path} [xmpp] jid: is required" in message
    assert f"{path} [xmpp] port: not a port number: 'none'" in message


def validOptions(tmp_path) -> tap.Options:
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    return options


def test_makeService(tmp_path):
    """
    A valid configuration gives the service tree with named store, xmpp
    and http children.
    """
    service = tap.makeService(validOptions(tmp_path), MemoryReactorClock())
    assert isinstance(service, PresenceService)
    assert {child.name for child in service} == {"store", "xmpp", "http", "events", "reclaim"}


def test_unopenableAccessLogRefusesToStart(tmp_path):
    """
    An access log file that cannot be opened stops start-up with the
    reason; it is opened when the service starts, as the account twistd
    runs it as.
    """
    (tmp_path / "access.log").mkdir()
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        f"[http]\nlisten = tcp:0:interface=127.0.0.1\naccess_log = {tmp_path / 'access.log'}\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    service = tap.makeService(options, MemoryReactorClock())
    with pytest.raises(SystemExit, match="presenced: refusing to start: .*Is a directory.*access.log"):
        service.startService()


def test_unusableStoreRefusesToStart(tmp_path):
    """
    A store file that cannot be used stops start-up with its path and the
    reason, before the XMPP link starts; it is opened when the service
    starts, as the account twistd runs it as.
    """
    store = tmp_path / "presence.sqlite"
    store.write_text("not a database, not at all, " * 10)
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        f"[http]\nlisten = tcp:0:interface=127.0.0.1\n[presence]\nstore = {store}\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    reactor = MemoryReactorClock()
    service = tap.makeService(options, reactor)
    with pytest.raises(SystemExit, match=f"presenced: refusing to start: cannot use the store {store}: "
                                         "not an SQLite database"):
        service.startService()
    assert reactor.tcpClients == []


def test_trustedProxiesFromTheFileReachTheAccessLog(tmp_path):
    """
    The [http] trusted_proxies of the settings file decide the client the
    access log names: the one in X-Forwarded-For when a trusted proxy
    forwards the request, the peer itself when another peer sends it.
    """
    accessLog = tmp_path / "access.log"
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        "[http]\nlisten = tcp:8080:interface=127.0.0.1\n"
        f"access_log = {accessLog}\ntrusted_proxies = 10.0.0.5\n"
        "[presence]\npublic = true\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    reactor = MemoryReactorClock()
    service = tap.makeService(options, reactor)
    service.startService()
    [site] = [factory for port, factory, _, _ in reactor.tcpServers if port == 8080]
    for peer in ("10.0.0.5", "192.0.2.44"):
        Connection(site, peer).send("GET", "/plugins/presence/status?jid=alice@example.com&type=text",
                                    headers={"X-Forwarded-For": "203.0.113.7"})
    reactor.advance(1)
    assert [line.split(" ")[0] for line in accessLog.read_text().splitlines()] == ['"203.0.113.7"', '"192.0.2.44"']
    service.stopService()


def test_hangupDuringStartUpIsAppliedOnceStarted(tmp_path):
    """
    A SIGHUP after the service is built and before it starts (while twistd
    binds ports and drops privileges) does not end the process: the
    settings are re-read once the service has started.
    """
    reactor = ThreadCallReactor()
    service = tap.makeService(validOptions(tmp_path), reactor)
    with capturedLogs() as events:
        os.kill(os.getpid(), signal.SIGHUP)
        reactor.runThreadCalls()
        assert not [e for e in events if e["log_format"].startswith("Reloading")]
        service.startService()
    assert [e["log_format"] for e in events if e["log_format"].startswith("Reload")] == [
        "Reloading the settings from {path}", "Reload done: nothing changed"]
    service.stopService()


def test_readyToldToSystemdOnceRunning(tmp_path, monkeypatch):
    """
    Run by systemd as a Type=notify service, the daemon sends READY=1 to
    systemd's notification socket once the reactor runs, not before.
    """
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    reactor = MemoryReactorClock()
    tap.makeService(validOptions(tmp_path), reactor)
    with pytest.raises(BlockingIOError):
        systemd.recv(100)
    reactor.run()
    assert systemd.recv(100) == b"READY=1"
    systemd.close()


def test_versionNamesTheInterpreter(capsys):
    """
    --version names presenced's version, the interpreter and Twisted, so
    that an operator can tell a PyPy daemon from a CPython one.
    """
    import platform

    import twisted

    from presenced import __version__

    with pytest.raises(SystemExit) as exited:
        tap.Options().parseOptions(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"presenced {__version__} ({platform.python_implementation()} {platform.python_version()}, "
        f"Twisted {twisted.__version__})")
