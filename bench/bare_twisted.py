"""
The ceiling of the stack: a bare twisted.web leaf resource that answers
every request with the same bytes.

    python bench/bare_twisted.py PORT FILE
"""

import sys

from twisted.internet import reactor
from twisted.web import resource, server


class Fixed(resource.Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"image/png")
        return self.body


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as f:
        site = server.Site(Fixed(f.read()))
    site.noisy = False
    site.log = lambda request: None  # no access log, as presenced by default
    reactor.listenTCP(port, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
