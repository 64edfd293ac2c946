"""
Drive a real twisted.web site over an in-memory transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site


@dataclass
class Response:
    code: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """
    One HTTP connection to C{site}: send raw requests, read the answers.
    """

    def __init__(self, site: Site, peer: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.channel = site.buildProtocol(self.transport.getPeer())
        self.channel.makeConnection(self.transport)

    def send(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: presence.example.test"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def response(self, withBody: bool = True) -> Response | None:
        """
        The answer written so far, or None if it is not complete yet.
        """
        data = self.transport.value()
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            return None
        status, *headerLines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in headerLines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0")) if withBody else 0
        if len(rest) < length:
            return None
        self.transport.clear()
        return Response(int(status.split()[1]), headers, rest[:length])

    def close(self) -> None:
        """
        The client closes the connection.
        """
        self.channel.connectionLost(Failure(ConnectionDone()))


def request(site: Site, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
    """
    Make one request and return its complete answer.
    """
    connection = Connection(site)
    connection.send(method, target, body, headers)
    response = connection.response(withBody=method != "HEAD")
    assert response is not None, "no complete answer"
    connection.close()
    return response
