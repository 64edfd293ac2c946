"""
Tests for L{presenced.service}: the service tree and reloading settings,
with an in-memory reactor and clock.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from OpenSSL.crypto import FILETYPE_PEM, dump_certificate
from OpenSSL.SSL import Connection as TLSConnection
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from presenced.config import load
from presenced.presence import ResourcePresence, State
from presenced.sandbox.certificates import selfSigned
from presenced.tap import buildService

from storehelpers import ImmediateThread, storedRows
from webhelpers import Connection, request

BASE = {
    "xmpp": {"jid": "presence.example.test", "secret": "s1", "host": "127.0.0.1",
             "port": "5347", "domain": "example.test"},
    "http": {"listen": "tcp:8081:interface=127.0.0.1"},
    "presence": {"public": "true"},
}


class RecordingReactor(MemoryReactorClock):
    """
    A memory reactor that records listening and closing in order, and that
    cannot listen on the ports in C{busy}.
    """

    def __init__(self):
        super().__init__()
        self.events = []
        self.busy = set()

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return self._listen(port, interface)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        super().listenSSL(port, factory, contextFactory, backlog, interface)
        return self._listen(port, interface)

    def _listen(self, port, interface):
        if port in self.busy:
            raise CannotListenError(interface, port, OSError("Address already in use"))
        self.events.append(("listen", port))
        return RecordedPort(self, port)

    def servedCertificate(self) -> bytes:
        """
        The certificate the last TLS port would present to a connection
        accepted now, in PEM.
        """
        creator = self.sslServers[-1][2]
        if IOpenSSLServerConnectionCreator.providedBy(creator):
            tlsProtocol = TLSMemoryBIOFactory(creator, False, Factory.forProtocol(Protocol)).buildProtocol(None)
            connection = creator.serverConnectionForTLS(tlsProtocol)
        else:
            connection = TLSConnection(creator.getContext(), None)
        return dump_certificate(FILETYPE_PEM, connection.get_certificate())


@implementer(IListeningPort)
class RecordedPort:
    """
    A port of L{RecordingReactor}, which records when it stops listening.
    """

    def __init__(self, reactor: RecordingReactor, port: int) -> None:
        self.reactor = reactor
        self.port = port

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        self.reactor.events.append(("close", self.port))

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)


class Daemon:
    """
    A service built from a settings file that the test rewrites.
    """

    def __init__(self, tmp_path):
        self.path = tmp_path / "presenced.ini"
        self.write()
        self.reactor = RecordingReactor()
        self.service = buildService(load(str(self.path)), self.reactor, configPath=str(self.path),
                                    storeThread=ImmediateThread)
        self.service.startService()

    def write(self, **changes):
        sections = {name: dict(keys) for name, keys in BASE.items()}
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            sections[section][key] = value
        self.path.write_text("".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
            for name, keys in sections.items()
        ))

    def reload(self, **changes):
        self.write(**changes)
        results = []
        self.service.reload().addBoth(results.append)
        return results

    def connectXMPP(self):
        """
        Complete the component handshake on the pending connection.
        """
        factory = self.reactor.tcpClients[-1][2]
        xs = factory.buildProtocol(None)
        xs.makeConnection(StringTransport())
        xs.dataReceived(b"<stream:stream xmlns='jabber:component:accept' "
                        b"xmlns:stream='http://etherx.jabber.org/streams' id='x'><handshake/>")
        return xs

    def text(self, jid="alice@example.test"):
        return request(self.service.site, "GET", f"/plugins/presence/status?jid={jid}&type=text").body


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.service.stopService()


def test_serviceTree(daemon):
    """
    The service connects to the configured server and listens on the
    configured endpoint.
    """
    assert [(host, port) for host, port, *_ in daemon.reactor.tcpClients] == [("127.0.0.1", 5347)]
    assert daemon.reactor.events == [("listen", 8081)]


def test_reloadAppliesPresenceSettings(daemon):
    """
    Changed presence settings apply at once, without reconnecting.
    """
    daemon.connectXMPP()
    assert daemon.text() == b"Unavailable"
    with capturedLogs() as events:
        assert daemon.reload(presence__unavailable_status="Away from keyboard",
                             presence__public="false", presence__roster_ttl="5") == [True]
    assert daemon.service.mode.policy.public is False
    assert daemon.service.mode.rosters.ttl == 5
    assert daemon.text("alice@example.test&req_jid=alice@example.test") == b"Away from keyboard"
    assert len(daemon.reactor.tcpClients) == 1
    assert daemon.service.link.connected
    assert "presence.public, presence.labels, presence.roster_ttl" in [
        e.get("changes") for e in events if "changes" in e
    ]


def test_reloadAppliesRedirectHosts(daemon):
    """
    Changed redirect_hosts apply to the next request.
    """
    target = "/plugins/presence/status?jid=a@example.test&offline=https%3A%2F%2Fevil.example%2F"
    assert request(daemon.service.site, "GET", target).code == 302
    assert daemon.reload(http__redirect_hosts="img.example.org") == [True]
    assert request(daemon.service.site, "GET", target).code == 400
    assert daemon.reload(http__redirect_hosts="*.evil.example evil.example") == [True]
    assert request(daemon.service.site, "GET", target).code == 302


def test_reloadAppliesCorsOriginsAndMaxAge(daemon):
    """
    Changed cors_origins and max_age apply to the next request.
    """
    def headers():
        return request(daemon.service.site, "GET", "/plugins/presence/status?jid=a@example.test",
                       headers={"Origin": "https://blog.example"}).headers

    assert (headers()["access-control-allow-origin"], headers()["cache-control"]) == ("*", "no-cache")
    assert daemon.reload(http__cors_origins="https://blog.example", http__max_age="60") == [True]
    assert (headers()["access-control-allow-origin"], headers()["vary"]) == ("https://blog.example", "Origin")
    assert headers()["cache-control"] == "max-age=60"
    assert daemon.reload(http__cors_origins="off") == [True]
    assert "access-control-allow-origin" not in headers()


def test_invalidReloadChangesNothing(daemon):
    """
    A file with errors is reported in full and nothing changes.
    """
    before = daemon.service.settings
    with capturedLogs() as events:
        assert daemon.reload(presence__public="sometimes", xmpp__port="0",
                             http__listen="tcp:9999") == [False]
    errors = [e for e in events if e["log_level"] == LogLevel.error]
    texts = [e.get("problem", e["log_format"]) for e in errors]
    assert f"{daemon.path} [xmpp] port: not a port number (1-65535): '0'" in texts
    assert f"{daemon.path} [presence] public: not a boolean (true/false, yes/no, on/off, 1/0): 'sometimes'" in texts
    assert "Reload aborted: the configuration has errors; nothing was changed" in texts
    assert daemon.service.settings is before
    assert daemon.reactor.events == [("listen", 8081)]
    assert len(daemon.reactor.tcpClients) == 1


def test_unchangedReload(daemon):
    """
    Reloading an unchanged file changes nothing.
    """
    assert daemon.reload() == [True]
    assert daemon.reactor.events == [("listen", 8081)]


def test_changedListenRebindsNewFirst(daemon):
    """
    A changed listen starts the new endpoints before closing the old.
    """
    assert daemon.reload(http__listen="tcp:8082:interface=127.0.0.1 tcp:8083:interface=127.0.0.1") == [True]
    assert daemon.reactor.events == [("listen", 8081), ("listen", 8082), ("listen", 8083), ("close", 8081)]
    assert set(daemon.service.listeners.listen) == {"tcp:8082:interface=127.0.0.1", "tcp:8083:interface=127.0.0.1"}


def test_bindFailureKeepsOldListeners(daemon):
    """
    If a new endpoint cannot listen, the reload is aborted: the other new
    ones close, the old ones stay, and no other setting changes.
    """
    daemon.reactor.busy.add(8083)
    before = daemon.service.settings
    with capturedLogs() as events:
        assert daemon.reload(http__listen="tcp:8082:interface=127.0.0.1 tcp:8083:interface=127.0.0.1",
                             presence__public="false") == [False]
    assert daemon.reactor.events == [("listen", 8081), ("listen", 8082), ("close", 8082)]
    assert list(daemon.service.listeners.listen) == ["tcp:8081:interface=127.0.0.1"]
    assert daemon.service.settings is before and daemon.service.mode.policy.public is True
    assert any("Reload aborted: cannot listen" in formatEvent(e) for e in events)


def test_changedXMPPSettingsReconnect(daemon):
    """
    Changed connection settings close the link and connect with the new
    ones once it is closed.
    """
    xs = daemon.connectXMPP()
    results = daemon.reload(xmpp__host="127.0.0.2", xmpp__port="5348", xmpp__secret="s2")
    assert results == []
    assert len(daemon.reactor.tcpClients) == 1
    xs.connectionLost(Failure(Exception("closed")))
    assert results == [True]
    host, port, factory, *_ = daemon.reactor.tcpClients[-1]
    assert (host, port) == ("127.0.0.2", 5348)
    assert factory.authenticator.password == "s2"
    assert not daemon.service.link.connected


def test_reloadFailingAfterValidationEndsLogged(daemon, monkeypatch):
    """
    A reload whose valid settings fail to apply still ends, with a log line
    saying it failed, and the settings in force stay the old ones.
    """
    def broken(settings):
        raise RuntimeError("cannot apply")

    monkeypatch.setattr(daemon.service.mode, "reconfig", broken)
    before = daemon.service.settings
    with capturedLogs() as events:
        assert daemon.reload(presence__roster_ttl="5") == [False]
    assert daemon.service.settings is before
    [failure] = [e for e in events if "log_failure" in e]
    assert "Reload failed" in formatEvent(failure) and failure["log_failure"].check(RuntimeError)


def test_linkSettingsThatCannotBeUsedAbortTheReload(daemon, monkeypatch):
    """
    New link settings that the link cannot use (its credentials cannot be
    made) abort the reload before anything changes: the link stays up.
    """
    daemon.connectXMPP()

    def unusable(settings):
        raise OSError("cannot read the CA file")

    monkeypatch.setattr(daemon.service.connection, "authenticatorFor", unusable)
    with capturedLogs() as events:
        assert daemon.reload(xmpp__secret="s2", presence__public="false") == [False]
    assert daemon.service.link.connected and daemon.service.mode.policy.public is True
    assert len(daemon.reactor.tcpClients) == 1
    assert any("Reload aborted: cannot use the new [xmpp] settings" in formatEvent(e) for e in events)


def test_hangupDuringReloadRunsOneMore(daemon):
    """
    Reloads asked for during a reload run as one more reload after it.
    """
    xs = daemon.connectXMPP()
    with capturedLogs() as events:
        first = daemon.reload(xmpp__secret="s2")
        second = daemon.reload(presence__unavailable_status="Later")
        third = daemon.reload(presence__unavailable_status="Later")
        assert first == second == third == []
        xs.connectionLost(Failure(Exception("closed")))
    started = [e for e in events if e["log_format"].startswith("Reloading the settings")]
    assert len(started) == 2
    assert first == [True] and second == [True] and third == [True]
    assert daemon.text() == b"Later"


def test_healthFollowsLink(daemon):
    """
    Health is 503 until the link is up, then 200 with the online count.
    """
    assert request(daemon.service.site, "GET", "/plugins/presence/health").code == 503
    xs = daemon.connectXMPP()
    xs.dataReceived(b"<presence from='alice@example.test/x' to='presence.example.test'/>")
    healthy, body = daemon.service.health()
    assert healthy and body["xmpp"] == "connected" and body["users_online"] == 1
    assert request(daemon.service.site, "GET", "/plugins/presence/health").code == 200
    xs.connectionLost(Failure(Exception("closed")))
    healthy, body = daemon.service.health()
    assert (healthy, body["xmpp"], body["users_online"]) == (False, "disconnected", 0)


def test_reloadAppliesHealthDetailsFrom(daemon):
    """
    Health details are shown to loopback clients by default, and to the
    networks of health_details_from once it is changed.
    """
    assert "version" in json.loads(request(daemon.service.site, "GET", "/plugins/presence/health").body)
    assert daemon.reload(http__health_details_from="192.0.2.0/24") == [True]
    assert json.loads(request(daemon.service.site, "GET", "/plugins/presence/health").body) == {
        "xmpp": "disconnected"}


def test_linkLossDropsCachedRosters(daemon):
    """
    Rosters cached before a link loss are dropped: after the link is back,
    the next subscribers-only request reads the roster again.
    """
    assert daemon.reload(presence__public="false") == [True]

    def rosterReads(xs) -> list[str]:
        return re.findall(r"<iq [^>]*id='([^']+)'[^>]*>\s*<query xmlns='jabber:iq:roster'",
                          xs.transport.value().decode())

    def askAndAnswer(xs) -> None:
        connection = Connection(daemon.service.site)
        connection.send("GET", "/plugins/presence/status?jid=alice@example.test&req_jid=bob@example.test&type=text")
        for iq in rosterReads(xs):
            xs.dataReceived(f"<iq type='result' id='{iq}' from='alice@example.test' to='presence.example.test'>"
                            "<query xmlns='jabber:iq:roster'><item jid='bob@example.test' subscription='from'/>"
                            "</query></iq>".encode())
        assert connection.response().body == b"Unavailable"

    xs = daemon.connectXMPP()
    askAndAnswer(xs)
    assert len(rosterReads(xs)) == 1
    askAndAnswer(xs)
    assert len(rosterReads(xs)) == 1
    xs.connectionLost(Failure(Exception("closed")))
    again = daemon.connectXMPP()
    askAndAnswer(again)
    assert len(rosterReads(again)) == 1


def test_reloadReopensAccessLog(daemon, tmp_path):
    """
    Every reload reopens the access log file, so that a rotated file is
    replaced by a new one.
    """
    path = tmp_path / "access.log"
    assert daemon.reload(http__access_log=str(path)) == [True]
    request(daemon.service.site, "GET", "/plugins/presence/status?jid=a@example.test")
    daemon.service.site.accessLog.flush()
    path.rename(tmp_path / "access.log.1")
    assert daemon.reload(http__access_log=str(path)) == [True]
    request(daemon.service.site, "GET", "/plugins/presence/status?jid=b@example.test")
    daemon.service.site.accessLog.flush()
    assert "a@example.test" in (tmp_path / "access.log.1").read_text()
    assert "b@example.test" in path.read_text() and "a@example.test" not in path.read_text()


def test_unwritableAccessLogAbortsReload(daemon, tmp_path):
    """
    An access log that cannot be opened aborts the reload.
    """
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "access.log").mkdir()
    with capturedLogs() as events:
        assert daemon.reload(http__access_log=str(directory / "access.log"),
                             presence__public="false") == [False]
    assert daemon.service.mode.policy.public is True
    assert any("Reload aborted" in e["log_format"] for e in events)


def test_reloadRereadsRequesterKeys(daemon, tmp_path):
    """
    Requester keys are re-read on reload: after a key is replaced, a
    request signed with the old one is refused and one signed with the new
    one is answered.
    """
    from presenced.sign import signedQuery

    old, new = b"old key, long enough to be used", b"new key, long enough to be used"
    key = tmp_path / "requester.key"
    key.write_bytes(old)
    key.chmod(0o600)
    assert daemon.reload(presence__public="false", presence__requester_key=str(key)) == [True]
    daemon.service.tracker.available("alice@example.test", ResourcePresence(resource="r", state=State.AWAY))
    expires = int(daemon.reactor.seconds()) + 60

    def text(signer):
        query = signedQuery(signer, "alice@example.test", "alice@example.test", expires)
        return request(daemon.service.site, "GET", f"/plugins/presence/status?{query}&type=text").body

    assert (text(old), text(new)) == (b"Away", b"Forbidden")
    key.write_bytes(new)
    assert daemon.reload(presence__public="false", presence__requester_key=str(key)) == [True]
    assert (text(old), text(new)) == (b"Forbidden", b"Away")


def test_reloadRenewsCertificateOnOpenPort(daemon, tmp_path):
    """
    A reload reads a TLS listener's certificate files again without
    closing its port: connections accepted afterwards get the new
    certificate.
    """
    cert, key = selfSigned("localhost", tmp_path)
    listen = f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    assert daemon.reload(http__listen=listen) == [True]
    assert daemon.reactor.servedCertificate() == cert.read_bytes()
    selfSigned("localhost", tmp_path)
    with capturedLogs() as events:
        assert daemon.reload(http__listen=listen) == [True]
    assert daemon.reactor.servedCertificate() == cert.read_bytes()
    assert daemon.reactor.events == [("listen", 8081), ("listen", 8443), ("close", 8081)]
    assert [e["description"] for e in events if "description" in e] == [listen]


def test_mismatchedCertificateAbortsReload(daemon, tmp_path):
    """
    A renewed certificate whose key is not the one on file aborts the
    reload; the port keeps serving the old certificate.
    """
    cert, key = selfSigned("localhost", tmp_path)
    listen = f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    assert daemon.reload(http__listen=listen) == [True]
    before = cert.read_bytes()
    other, _ = selfSigned("other", tmp_path)
    cert.write_bytes(other.read_bytes())
    with capturedLogs() as events:
        assert daemon.reload(http__listen=listen, presence__public="false") == [False]
    assert daemon.reactor.servedCertificate() == before
    assert daemon.service.mode.policy.public is True
    texts = [e.get("problem", e["log_format"]) for e in events if e["log_level"] == LogLevel.error]
    assert any(text.endswith("Certificate public and private keys do not match.") for text in texts)
    assert "Reload aborted: the configuration has errors; nothing was changed" in texts


def test_reloadedDomainIsServedEverywhereAtOnce(daemon):
    """
    A new served domain applies to the web side and to ingestion alike,
    with one reload: its users are answered and their presence tracked;
    the old domain's are neither.
    """
    from twisted.words.xish import domish

    def presenceFrom(sender):
        element = domish.Element(("jabber:component:accept", "presence"))
        element["from"] = sender
        return element

    assert daemon.reload(xmpp__domain="other.test") == [True]
    daemon.service.feed.onPresence(presenceFrom("carol@other.test/desk"))
    daemon.service.feed.onPresence(presenceFrom("alice@example.test/desk"))
    assert daemon.text("carol@other.test") == b"Available"
    assert daemon.text("alice@example.test") == b"Forbidden"
    assert daemon.service.tracker.shown("alice@example.test").state is State.OFFLINE


def openFiles(path) -> int:
    """
    How many of this process's file descriptors are open on C{path}.
    """
    return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd"))


def test_reloadTurnsTheStoreOnAndOff(daemon, tmp_path):
    """
    A reload that sets a store starts writing offline users to it, with
    what the model knew before; one that turns it off stops the writes.
    """
    path = tmp_path / "presence.sqlite"
    tracker = daemon.service.tracker
    tracker.unavailable("alice@example.test", None, "Before", 100.0)
    with capturedLogs() as events:
        assert daemon.reload(presence__store=str(path)) == [True]
    assert "presence.store" in [e.get("changes") for e in events if "changes" in e]
    tracker.unavailable("bob@example.test", None, "After", 101.0)
    daemon.reactor.advance(1)
    assert storedRows(path) == [("alice@example.test", "Before", None), ("bob@example.test", "After", None)]
    assert daemon.reload() == [True]
    assert daemon.reload(presence__store="off") == [True]
    tracker.unavailable("carol@example.test", None, "Not kept", 102.0)
    daemon.reactor.advance(1)
    assert len(storedRows(path)) == 2


def test_unusableStoreAbortsReload(daemon, tmp_path):
    """
    A new store that cannot be used aborts the reload, with its path and
    why in the log, and nothing changes.
    """
    (tmp_path / "presence.sqlite").mkdir()
    with capturedLogs() as events:
        assert daemon.reload(presence__store=str(tmp_path / "presence.sqlite"), presence__public="false") == [False]
    assert daemon.service.mode.policy.public is True
    assert f"Reload aborted: cannot use the store {tmp_path / 'presence.sqlite'}: Is a directory; nothing was changed" \
        in [formatEvent(e) for e in events]


def test_storeOpenedForAnAbortedReloadIsClosed(daemon, tmp_path):
    """
    A new store opened by a reload that is then aborted (a new port does
    not bind) is closed again, and the reload changes nothing.
    """
    path = tmp_path / "presence.sqlite"
    daemon.reactor.busy.add(8083)
    assert daemon.reload(presence__store=str(path), http__listen="tcp:8083:interface=127.0.0.1") == [False]
    assert openFiles(path) == 0
    daemon.service.tracker.unavailable("alice@example.test", None, "Not kept", 100.0)
    daemon.reactor.advance(1)
    assert storedRows(path) == []
