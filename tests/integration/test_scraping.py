"""
/plugins/presence/metrics through the real daemon, against a real Prosody,
scraped over real sockets and parsed by prometheus_client's own parser.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
import pytest_twisted
from twisted.web.client import readBody

from conftest import until
from test_daemon import daemon  # noqa: F401 (the fixture)


async def scrape(world) -> dict[tuple[str, tuple], float]:
    """
    Every sample of the metrics, by name and labels.
    """
    url = f"http://127.0.0.1:{world.port}/plugins/presence/metrics".encode()
    response = await world.agent.request(b"GET", url)
    assert response.code == 200
    text = (await readBody(response)).decode("utf-8")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest_twisted.ensureDeferred
async def test_metricsReflectRealTraffic(world):
    """
    With a real user online and requests made, the metrics say so: the
    link is up, the user and the resource are online, the presence came
    in, and each request counted under its endpoint, type and code.
    """
    user = world.user("scraped")
    client = await world.login(user)
    client.available(status="Counted")
    await world.start(public=True)
    await world.waitForText(f"jid={user}", "Counted")
    for query in [f"jid={user}", f"jid={user}&type=xml", "jid=broken"]:
        await world.get(query)
    samples = await scrape(world)
    assert samples["presenced_xmpp_connected", ()] == 1
    assert samples["presenced_users_online", ()] >= 1
    assert samples["presenced_resources_online", ()] >= 1
    assert samples["presenced_presence_stanzas_total", ()] >= 1
    assert samples["presenced_http_requests_total", (("code", "200"), ("endpoint", "status"), ("type", "image"))] == 1
    assert samples["presenced_http_requests_total", (("code", "200"), ("endpoint", "status"), ("type", "xml"))] == 1
    assert samples["presenced_http_requests_total", (("code", "400"), ("endpoint", "status"), ("type", "image"))] == 1
    assert samples["presenced_http_request_duration_seconds_count", (("endpoint", "status"),)] >= 3
    assert samples["process_resident_memory_bytes", ()] > 0

    await client.disconnect()
    world.clients.remove(client)
    await world.waitForText(f"jid={user}", "Unavailable")
    assert (await scrape(world))["presenced_resources_online", ()] < samples["presenced_resources_online", ()]


@pytest_twisted.ensureDeferred
async def test_twistdServesMetricsToLoopbackOnly(world, daemon):
    """
    The real twistd serves the metrics to loopback; after a reload that
    names another network, loopback gets a 404 and the reload is counted.
    """
    daemon.write(public=True)
    await daemon.start()
    samples = await scrape(world)
    assert samples["presenced_xmpp_connected", ()] == 1
    assert samples["presenced_reloads_total", (("result", "ok"),)] == 0

    daemon.settings.write_text(daemon.settings.read_text().replace("[http]\n", "[http]\nmetrics_from = 192.0.2.0/24\n"))
    await daemon.reload()
    url = f"http://127.0.0.1:{world.port}/plugins/presence/metrics".encode()
    response = await world.agent.request(b"GET", url)
    await readBody(response)
    assert response.code == 404
