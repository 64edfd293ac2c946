"""
The limits against abuse in the real twistd, against a real Prosody, over
real sockets: roster reads per client, connection caps, and the request
timeout, each seen by the client and counted in the metrics.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import threads

from conftest import until
from test_daemon import daemon  # noqa: F401 (the fixture)
from test_scraping import scrape

LIMITS = "[http]\nrequest_timeout = 1\nmax_connections_per_client = 4\n"


def limited(samples, limit: str) -> float:
    return samples.get(("presenced_limited_total", (("limit", limit),)), 0)


def closedByServer(sock: socket.socket, wait: float) -> bool:
    """
    Whether the server closes C{sock} within C{wait} seconds, sending
    nothing.
    """
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, BlockingIOError):
        return False
    except ConnectionResetError:
        return True


@pytest_twisted.ensureDeferred
async def test_rosterReadsPerClientEndIn429(world, daemon):
    """
    Subscribers-only, a client that caused its two roster reads gets 429
    with Retry-After for the next request, whether the user asked for
    exists or not, with the same headers and body.
    """
    alice = world.user("limitedalice")
    client = await world.login(alice)
    client.available(status="Here")
    daemon.write(public=False, presence={"roster_reads_per_client": 2})
    await daemon.start()
    requester = world.user("limitedbob")
    first = await world.get(f"jid={world.user('first')}&req_jid={requester}&type=text")
    second = await world.get(f"jid={world.user('second')}&req_jid={requester}&type=text")
    assert (first.code, second.code) == (200, 200)
    refused = [await world.get(f"jid={user}&req_jid={requester}&type=text")
               for user in (alice, world.user("nobodyatall"))]
    assert [answer.code for answer in refused] == [429, 429]
    assert refused[0].headers["retry-after"][0].isdigit()
    headers = [{k: v for k, v in answer.headers.items() if k != "date"} for answer in refused]
    assert headers[0] == headers[1] and refused[0].body == refused[1].body
    assert limited(await scrape(world), "roster_reads_per_client") == 2


@pytest_twisted.ensureDeferred
async def test_connectionCapsAndRequestTimeout(world, daemon):
    """
    A fifth connection from one address is closed at once; a request sent
    in half is closed at the timeout, as is a connection that sends
    nothing; both counted.  Whole requests are still answered.
    """
    daemon.write(public=True)
    daemon.settings.write_text(daemon.settings.read_text().replace("[http]\n", LIMITS))
    await daemon.start()
    held = [socket.create_connection(("127.0.0.1", world.port)) for _ in range(4)]
    try:
        extra = socket.create_connection(("127.0.0.1", world.port))
        assert await threads.deferToThread(closedByServer, extra, 5.0)
        extra.close()
        held[0].sendall(b"GET /plugins/presence/status?jid=a@b HTTP/1.1\r\nHost: x\r\n")
        assert await threads.deferToThread(closedByServer, held[0], 5.0)
        assert await threads.deferToThread(closedByServer, held[1], 5.0)
    finally:
        for sock in held:
            sock.close()
    answer = await world.get(f"jid={world.user('someone')}&type=text")
    assert answer.code == 200
    samples = await scrape(world)
    assert limited(samples, "max_connections_per_client") >= 1
    assert limited(samples, "request_timeout") >= 1
    assert "Traceback" not in daemon.log()
