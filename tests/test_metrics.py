"""
Tests for L{presenced.metrics}: every metric, read back through the
registry, of a real service tree driven with an in-memory reactor and
clock; who may read them; and labels that stay few whatever is asked.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.python.failure import Failure

from presenced.metrics import Metrics, PlainHistogram

from test_service import Daemon, daemon  # noqa: F401 (the fixture)
from webhelpers import Connection, request

STATUS = "/plugins/presence/status"
METRICS = "/plugins/presence/metrics"
ROSTER_READ = re.compile(r"<iq [^>]*id='([^']+)'[^>]*>\s*<query xmlns='jabber:iq:roster'")


def value(daemon, name, **labels):
    """
    The value of one sample of C{daemon}'s metrics, or C{None}.
    """
    return daemon.service.metrics.registry.get_sample_value(name, labels)


def requests(daemon, **labels):
    return value(daemon, "presenced_http_requests_total", **labels)


def raw(site, method, target, peer="127.0.0.1", headers=None):
    """
    The whole answer to one request from C{peer}, as sent, but its C{Date}.
    """
    connection = Connection(site, peer)
    connection.send(method, target, headers=headers)
    return re.sub(rb"\r\nDate: [^\r]*", b"", connection.transport.value())


def scrape(daemon, peer="127.0.0.1", headers=None):
    connection = Connection(daemon.service.site, peer)
    connection.send("GET", METRICS, headers=headers)
    return connection.response()


def test_requestsCountedByEndpointTypeAndCode(daemon):
    """
    Each answered request counts once under its endpoint, its answer type
    (the default when none is asked) and its status code.
    """
    site = daemon.service.site
    for query in ["jid=alice@example.test", "jid=alice@example.test&type=image", "jid=alice@example.test&type=text",
                  "jid=alice@example.test&type=xml", "jid=alice@example.test&type=pdf", "type=text"]:
        request(site, "GET", f"{STATUS}?{query}")
    request(site, "GET", "/plugins/presence/health")
    request(site, "GET", "/plugins/presence/nothing")
    request(site, "GET", "/favicon.ico")
    assert requests(daemon, endpoint="status", type="image", code="200") == 2
    assert requests(daemon, endpoint="status", type="text", code="200") == 1
    assert requests(daemon, endpoint="status", type="xml", code="200") == 1
    assert requests(daemon, endpoint="status", type="invalid", code="400") == 1
    assert requests(daemon, endpoint="status", type="text", code="400") == 1
    assert requests(daemon, endpoint="health", type="", code="503") == 1
    assert requests(daemon, endpoint="other", type="", code="404") == 2


def test_requestsAnsweredLaterCountWhenAnswered(daemon):
    """
    A subscribers-only request waiting for a roster counts once it is
    answered, with the time it waited; one whose client left first does not.
    """
    assert daemon.reload(presence__public="false") == [True]
    xs = daemon.connectXMPP()
    connection = Connection(daemon.service.site)
    connection.send("GET", f"{STATUS}?jid=alice@example.test&req_jid=bob@example.test&type=text")
    assert requests(daemon, endpoint="status", type="text", code="200") is None
    daemon.reactor.advance(0.3)
    iq, = ROSTER_READ.findall(xs.transport.value().decode())
    xs.dataReceived(f"<iq type='result' id='{iq}' from='alice@example.test' to='presence.example.test'>"
                    "<query xmlns='jabber:iq:roster'/></iq>".encode())
    assert connection.response().body == b"Forbidden"
    assert requests(daemon, endpoint="status", type="text", code="200") == 1
    duration = "presenced_http_request_duration_seconds"
    assert value(daemon, duration + "_sum", endpoint="status") == pytest.approx(0.3)
    assert value(daemon, duration + "_bucket", endpoint="status", le="0.25") == 0
    assert value(daemon, duration + "_bucket", endpoint="status", le="0.5") == 1

    gone = Connection(daemon.service.site)
    gone.send("GET", f"{STATUS}?jid=carol@example.test&req_jid=bob@example.test&type=text")
    gone.channel.connectionLost(Failure(Exception("closed")))
    assert value(daemon, duration + "_count", endpoint="status") == 1


def test_labelsStayFewWhateverIsAsked(daemon):
    """
    Hostile paths, types, methods and parameters add no label values: the
    requests series stay the few that presenced's own answers make.
    """
    site = daemon.service.site
    for n in range(300):
        request(site, "GET", f"/plugins/presence/x{n}")
        request(site, "GET", f"/plugins/presence/status/x{n}?jid=a{n}@example.test")
        request(site, "GET", f"{STATUS}?jid=a{n}@example.test&type=t{n}")
        request(site, "GET", f"{STATUS}?jid=a{n}@example.test&type=text&type=xml")
        request(site, "GET", f"{STATUS}?jid=a{n}@example.test&type=%ff%fe{n}")
        request(site, f"M{n}", f"/plugins/presence/st%61tus?jid=a{n}@example.test")
        request(site, "GET", f"/a/{n}/../../plugins/presence/status?jid=a{n}@example.test")
    families = {family.name: family for family in text_string_to_metric_families(scrape(daemon).body.decode())}
    labels = {tuple(sorted(sample.labels.items())) for sample in families["presenced_http_requests"].samples
              if sample.name == "presenced_http_requests_total"}
    assert labels == {
        (("code", "404"), ("endpoint", "other"), ("type", "")),
        (("code", "200"), ("endpoint", "status"), ("type", "image")),
        (("code", "400"), ("endpoint", "status"), ("type", "invalid")),
        (("code", "405"), ("endpoint", "status"), ("type", "image")),
    }
    assert not any("a1@" in sample.labels.get(name, "") for family in families.values()
                   for sample in family.samples for name in sample.labels)


def test_link(daemon):
    """
    The link's gauge follows it up and down; reconnects count the times it
    came back after it had been up.
    """
    assert value(daemon, "presenced_xmpp_connected") == 0
    xs = daemon.connectXMPP()
    assert (value(daemon, "presenced_xmpp_connected"), value(daemon, "presenced_xmpp_reconnects_total")) == (1, 0)
    xs.connectionLost(Failure(Exception("closed")))
    assert value(daemon, "presenced_xmpp_connected") == 0
    daemon.connectXMPP()
    assert (value(daemon, "presenced_xmpp_connected"), value(daemon, "presenced_xmpp_reconnects_total")) == (1, 1)


def test_presenceAndModel(daemon):
    """
    Every presence stanza is counted; users and resources online are what
    the model holds when the metrics are read.
    """
    xs = daemon.connectXMPP()
    for stanza in ["<presence from='alice@example.test/home'/>", "<presence from='alice@example.test/work'/>",
                   "<presence from='bob@example.test/phone'/>", "<presence from='eve@elsewhere.test/x'/>"]:
        xs.dataReceived(stanza.encode())
    assert value(daemon, "presenced_presence_stanzas_total") == 4
    assert (value(daemon, "presenced_users_online"), value(daemon, "presenced_resources_online")) == (2, 3)
    xs.dataReceived(b"<presence type='unavailable' from='alice@example.test/work'/>")
    assert (value(daemon, "presenced_users_online"), value(daemon, "presenced_resources_online")) == (2, 2)
    xs.connectionLost(Failure(Exception("closed")))
    assert (value(daemon, "presenced_users_online"), value(daemon, "presenced_resources_online")) == (0, 0)


def test_rosterCache(daemon):
    """
    Roster lookups count as hits or misses; each roster read is timed,
    apart by whether it gave the roster.
    """
    assert daemon.reload(presence__public="false") == [True]
    xs = daemon.connectXMPP()
    site = daemon.service.site

    def ask(user):
        connection = Connection(site)
        connection.send("GET", f"{STATUS}?jid={user}&req_jid=bob@example.test&type=text")
        return connection

    waiting = ask("alice@example.test")
    daemon.reactor.advance(0.2)
    iq, = ROSTER_READ.findall(xs.transport.value().decode())
    xs.transport.clear()
    xs.dataReceived(f"<iq type='result' id='{iq}' from='alice@example.test' to='presence.example.test'>"
                    "<query xmlns='jabber:iq:roster'><item jid='bob@example.test' subscription='from'/>"
                    "</query></iq>".encode())
    assert waiting.response().body == b"Unavailable"
    assert ask("alice@example.test").response().body == b"Unavailable"
    failing = ask("carol@example.test")
    iq, = ROSTER_READ.findall(xs.transport.value().decode())
    xs.dataReceived(f"<iq type='error' id='{iq}' from='carol@example.test' to='presence.example.test'>"
                    "<error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                    "</iq>".encode())
    assert failing.response().body == b"Forbidden"
    lookups = "presenced_roster_cache_lookups_total"
    assert (value(daemon, lookups, result="hit"), value(daemon, lookups, result="miss")) == (1, 2)
    fetches = "presenced_roster_fetch_seconds"
    assert value(daemon, fetches + "_count", result="ok") == 1
    assert value(daemon, fetches + "_sum", result="ok") == pytest.approx(0.2)
    assert value(daemon, fetches + "_count", result="failed") == 1


def test_reloads(daemon):
    """
    Reloads count by result: applied, a file with errors, or valid
    settings that cannot be applied while presenced runs.
    """
    assert daemon.reload(presence__public="false") == [True]
    assert daemon.reload() == [True]
    assert daemon.reload(presence__public="perhaps") == [False]
    daemon.reactor.busy.add(8082)
    assert daemon.reload(http__listen="tcp:8082:interface=127.0.0.1") == [False]
    assert [value(daemon, "presenced_reloads_total", result=result) for result in ("ok", "failed", "refused")] == [
        2, 1, 1]


def test_limitedCountsEachLimit():
    """
    Each limit counts apart, under its own name.
    """
    metrics = Metrics(None)
    metrics.limited("roster_reads")
    metrics.limited("roster_reads")
    metrics.limited("resources")
    assert metrics.registry.get_sample_value("presenced_limited_total", {"limit": "roster_reads"}) == 2
    assert metrics.registry.get_sample_value("presenced_limited_total", {"limit": "resources"}) == 1


def test_histogramBucketsHoldTheirBoundAndCount():
    """
    A histogram's buckets count every amount up to their bound, the bound
    included; +Inf counts all, and the sum adds them up.
    """
    registry = CollectorRegistry()
    histogram = PlainHistogram("h_seconds", "h", ("k",), (0.1, 1.0), registry)
    for amount in [0.05, 0.1, 0.5, 20]:
        histogram.observe(amount, ("a",))
    assert [registry.get_sample_value("h_seconds_bucket", {"k": "a", "le": le}) for le in ("0.1", "1.0", "+Inf")] == [
        2, 3, 4]
    assert (registry.get_sample_value("h_seconds_count", {"k": "a"}),
            registry.get_sample_value("h_seconds_sum", {"k": "a"})) == (4, pytest.approx(20.65))


def test_scrapeIsThePrometheusTextFormat(daemon):
    """
    Loopback clients are served the metrics in the Prometheus text format,
    never cached, the process's own among them.
    """
    request(daemon.service.site, "GET", f"{STATUS}?jid=alice@example.test")
    response = scrape(daemon)
    assert response.code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"].startswith("no-cache, no-store")
    families = {family.name: family for family in text_string_to_metric_families(response.body.decode())}
    assert families["presenced_http_requests"].type == "counter"
    assert families["presenced_http_request_duration_seconds"].type == "histogram"
    assert families["presenced_xmpp_connected"].type == "gauge"
    assert {"presenced_users_online", "presenced_resources_online", "presenced_presence_stanzas",
            "presenced_xmpp_reconnects", "presenced_roster_cache_lookups", "presenced_roster_fetch_seconds",
            "presenced_reloads", "presenced_limited", "process_resident_memory_bytes",
            "python_info"} <= families.keys()
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    head = Connection(daemon.service.site)
    head.send("HEAD", METRICS)
    answer = head.response(withBody=False)
    assert (answer.code, answer.headers["content-type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert head.transport.value() == b""


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "BREW"])
def test_othersGetTheAnswerOfAnUnknownPath(daemon, method):
    """
    A client on no network of metrics_from gets, for any method, the very
    answer of a path that names nothing.
    """
    site = daemon.service.site
    nothing = raw(site, method, "/plugins/presence/nothing", peer="192.0.2.1")
    assert nothing.startswith(b"HTTP/1.1 404 ")
    assert raw(site, method, METRICS, peer="192.0.2.1") == nothing
    assert raw(site, method, METRICS, peer="127.0.0.1", headers={"X-Forwarded-For": "127.0.0.1"}) == nothing


def test_otherMethodsFromReaders(daemon):
    """
    A reader asking with a method other than GET or HEAD gets a 405.
    """
    response = request(daemon.service.site, "POST", METRICS)
    assert (response.code, response.headers["allow"]) == (405, "GET, HEAD")


def test_readersBehindTrustedProxies(daemon):
    """
    Behind trusted proxies, the client they name decides, as for the
    details of health.
    """
    assert daemon.reload(http__trusted_proxies="10.0.0.5", http__metrics_from="192.0.2.0/24") == [True]
    assert scrape(daemon, "10.0.0.5", {"X-Forwarded-For": "192.0.2.7"}).code == 200
    assert scrape(daemon, "10.0.0.5", {"X-Forwarded-For": "203.0.113.7"}).code == 404
    assert scrape(daemon, "10.0.0.5", {"X-Forwarded-For": "192.0.2.7, <script>"}).code == 404
    assert scrape(daemon, "127.0.0.1").code == 404
    assert scrape(daemon, "203.0.113.7", {"X-Forwarded-For": "192.0.2.7"}).code == 404


def test_reloadAppliesMetricsFrom(daemon):
    """
    A changed metrics_from applies on reload; empty lets nobody read.
    """
    assert scrape(daemon, "192.0.2.7").code == 404
    assert daemon.reload(http__metrics_from="192.0.2.0/24 ::1") == [True]
    assert (scrape(daemon, "192.0.2.7").code, scrape(daemon, "127.0.0.1").code) == (200, 404)
    assert daemon.reload(http__metrics_from="") == [True]
    assert scrape(daemon, "192.0.2.7").code == 404


def test_requestsNotCountedWhileNobodyMayRead(daemon):
    """
    With metrics_from empty no request is counted; once readers are
    allowed again, requests count from then on.
    """
    site = daemon.service.site
    assert daemon.reload(http__metrics_from="") == [True]
    request(site, "GET", f"{STATUS}?jid=alice@example.test")
    assert requests(daemon, endpoint="status", type="image", code="200") in (None, 0)
    assert daemon.reload(http__metrics_from="127.0.0.0/8") == [True]
    request(site, "GET", f"{STATUS}?jid=alice@example.test")
    assert requests(daemon, endpoint="status", type="image", code="200") == 1


def test_registriesKeepApart(tmp_path):
    """
    Two services in one process count apart.
    """
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Daemon(tmp_path / "a"), Daemon(tmp_path / "b")
    try:
        request(first.service.site, "GET", f"{STATUS}?jid=alice@example.test")
        assert requests(first, endpoint="status", type="image", code="200") == 1
        assert requests(second, endpoint="status", type="image", code="200") is None
    finally:
        first.service.stopService()
        second.service.stopService()


def test_endpointsWithoutTypesHaveAnEmptyType(daemon):
    """
    The batch and event-stream endpoints take no C{type}: their requests
    are counted with an empty one, whatever the query holds.
    """
    site = daemon.service.site
    request(site, "GET", "/plugins/presence/statuses?jid=alice@example.test&type=xml")
    request(site, "GET", "/plugins/presence/statuses?jid=alice@example.test")
    assert requests(daemon, endpoint="statuses", type="", code="200") == 2
    assert requests(daemon, endpoint="statuses", type="image", code="200") is None


def test_everyLimitIsCountedByName(daemon):
    """
    The limits tell the metrics each time they refuse, cut or drop
    something: here a connection over the per-client cap and a stanza over
    the link's size limit.
    """
    assert daemon.reload(http__max_connections_per_client="1") == [True]
    first = Connection(daemon.service.site, "192.0.2.7")
    second = Connection(daemon.service.site, "192.0.2.7")
    assert second.transport.disconnecting and not first.transport.disconnecting
    xs = daemon.connectXMPP()
    xs.dataReceived(b"<presence from='alice@example.test/a'><status>"
                    + b"x" * (xs.stream.maxStanzaSize + 10) + b"</status></presence>")
    assert value(daemon, "presenced_limited_total", limit="max_connections_per_client") == 1
    assert value(daemon, "presenced_limited_total", limit="stanza_size") == 1
