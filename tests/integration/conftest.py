"""
Fixtures for the integration tests: a real Prosody on loopback, real XMPP
clients, presenced running in the test's reactor, and real HTTP requests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from presenced.config import fromString
from presenced.sandbox.client import SandboxClient
from presenced.sandbox.prosody import Prosody, freePort
from presenced.service import PresenceService
from presenced.tap import buildService

PASSWORD = "integration-password"
_names = itertools.count(1)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prosody():
    """
    One Prosody for the session, with vCards; each test makes its own
    users.
    """
    server = Prosody(modules=("vcard",))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def fresh_prosody():
    """
    A Prosody of the test's own, which it may stop and start.
    """
    server = Prosody()
    server.start()
    yield server
    server.cleanup()


async def until(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:
    """
    Wait until C{predicate()} is true, failing after C{timeout} seconds.
    """
    for _ in range(int(timeout / interval)):
        if predicate():
            return
        await task.deferLater(reactor, interval)
    raise AssertionError(f"condition not met within {timeout}s")


@dataclass
class Answer:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers[name.lower()][0]


class World:
    """
    What one test needs: users on the server, their clients, presenced.
    """

    def __init__(self, server: Prosody) -> None:
        self.server = server
        self.clients: list[SandboxClient] = []
        self.service: PresenceService | None = None
        self.port = freePort()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)

    def user(self, name: str = "user") -> str:
        """
        Register a new account with a unique name; returns its bare JID.
        """
        return self.server.register(f"{name}{next(_names)}", PASSWORD)

    async def login(self, jid: str, resource: str = "test") -> SandboxClient:
        client = SandboxClient(reactor, f"{jid}/{resource}", PASSWORD, self.server.c2sPort)
        await client.connect()
        self.clients.append(client)
        return client

    def settings(self, public: bool = True, secret: str | None = None, extra: str = "", xmpp: str = "") -> str:
        return f"""
[xmpp]
jid = {self.server.component}
secret = {secret or self.server.secret}
host = 127.0.0.1
port = {self.server.componentPort}
domain = {self.server.domain}
{xmpp}

[http]
listen = tcp:{self.port}:interface=127.0.0.1

[presence]
public = {"true" if public else "false"}
{extra}
"""

    async def start(self, public: bool = True, waitForLink: bool = True, **keys) -> PresenceService:
        """
        Run presenced in this reactor against the server.
        """
        self.service = buildService(fromString(self.settings(public, **keys)), reactor)
        self.service.startService()
        if waitForLink:
            await until(lambda: self.service.link.connected)
        return self.service

    async def get(self, query: str, method: bytes = b"GET", body=None, headers=None) -> Answer:
        url = f"http://127.0.0.1:{self.port}/plugins/presence/status?{query}".encode()
        response = await self.agent.request(method, url, headers, body)
        data = await readBody(response)
        return Answer(response.code, {k.decode().lower(): [v.decode() for v in vs]
                                      for k, vs in response.headers.getAllRawHeaders()}, data)

    async def text(self, query: str) -> str:
        answer = await self.get(query + "&type=text")
        assert answer.code == 200
        return answer.body.decode("utf-8")

    async def waitForText(self, query: str, expected: str, timeout: float = 10.0) -> None:
        """
        Poll the text answer until it is C{expected}.
        """
        last = None
        for _ in range(int(timeout / 0.05)):
            last = await self.text(query)
            if last == expected:
                return
            await task.deferLater(reactor, 0.05)
        raise AssertionError(f"text answer stayed {last!r}, expected {expected!r}")

    async def close(self) -> None:
        for client in self.clients:
            await client.disconnect()
        if self.service is not None and self.service.running:
            await self.service.stopService()
            await until(lambda: not self.service.link.connected)
        await self.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def world(prosody):
    w = World(prosody)
    yield w
    await w.close()


@pytest_twisted.async_yield_fixture
async def fresh_world(fresh_prosody):
    w = World(fresh_prosody)
    yield w
    await w.close()
