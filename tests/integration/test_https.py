"""
presenced serving HTTPS itself, from an ssl: listen endpoint.
"""

from __future__ import annotations

import ssl
import urllib.request

import pytest_twisted
from twisted.internet import reactor, threads

from presenced.config import fromString
from presenced.sandbox.certificates import selfSigned, servedCertificate
from presenced.tap import buildService


@pytest_twisted.ensureDeferred
async def test_httpsListener(world, tmp_path):
    """
    An ssl: endpoint with a certificate and key serves the API over TLS.
    """
    cert, key = selfSigned("localhost", tmp_path)
    settings = world.settings().replace(
        f"listen = tcp:{world.port}:interface=127.0.0.1",
        f"listen = ssl:{world.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    world.service = buildService(fromString(settings), reactor)
    world.service.startService()
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://localhost:{world.port}/plugins/presence/status?jid=nobody@{world.server.domain}&type=text"

    def fetch() -> bytes:
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return answer.read()

    assert await threads.deferToThread(fetch) == b"Unavailable"


@pytest_twisted.ensureDeferred
async def test_certificateRenewedOnReload(world, tmp_path):
    """
    A reload reads renewed certificate files: new connections get the new
    certificate.  Unreadable files abort the reload and keep the old one.
    """
    cert, key = selfSigned("localhost", tmp_path)
    settings = world.settings().replace(
        f"listen = tcp:{world.port}:interface=127.0.0.1",
        f"listen = ssl:{world.port}:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    path = tmp_path / "presenced.ini"
    path.write_text(settings)
    world.service = buildService(fromString(settings), reactor, configPath=str(path))
    world.service.startService()

    def served() -> str:
        return servedCertificate("127.0.0.1", world.port)

    before = await threads.deferToThread(served)
    assert before.strip() == cert.read_text().strip()
    key.write_text("not a key")
    assert await world.service.reload() is False
    assert (await threads.deferToThread(served)) == before

    selfSigned("localhost", tmp_path)
    assert await world.service.reload() is True
    after = await threads.deferToThread(served)
    assert after.strip() == cert.read_text().strip() != before.strip()
