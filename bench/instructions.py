"""
Instructions per operation on presenced's hot paths, counted by callgrind:
a measure that the noise of a shared machine does not move, for judging
one change against another.

    python bench/instructions.py                 every workload below
    python bench/instructions.py http:text ingest

Workloads, each in a fresh process with presenced's real service:

    http:image, http:text, http:xml   keep-alive GETs through the real
                                      site's HTTP channel, over an
                                      in-memory transport (public mode,
                                      1,000 users online)
    http:image-logged                 the image GET with the access log
                                      on (written to /dev/null through
                                      the usual file buffer), with a
                                      browser's User-Agent and a Referer
    http:image-unobserved             the image GET with the metrics off
                                      (no request counted), access log off
    http:bare                         the same against a bare twisted.web
                                      leaf returning the PNG
    ingest                            the recorded Prosody stream (see
                                      scale.py) through the real component
                                      stream, handlers and model

Each workload runs at two sizes under callgrind; the difference divided by
the difference in operations is the cost of one, start-up excluded.  For
ingestion, building the stream to replay is counted apart and taken off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

WORKLOADS = ("http:bare", "http:image", "http:text", "http:xml", "http:image-logged", "http:image-unobserved",
             "ingest")
SIZES = {"http": (500, 2500), "ingest": (1000, 3000)}


def runHTTP(kind: str, requests: int) -> None:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    import scale

    service, xs = scale.connectedService()
    for chunk in scale.stream(1000, churn=False):
        xs.dataReceived(chunk)
    if kind == "bare":
        from twisted.web import server

        from bare_twisted import Fixed
        from presenced.config import defaultImageDirectory

        site = server.Site(Fixed((defaultImageDirectory() / "away.png").read_bytes()))
        site.log = lambda request: None
        target = b"/"
    else:
        site = service.site
        target = b"/plugins/presence/status?jid=user1@example.test&type=" + kind.partition("-")[0].encode()
    headers = b"Host: 127.0.0.1\r\n"
    if kind.endswith("-unobserved"):
        site.requestObserver = None
    if kind.endswith("-logged"):
        from twisted.internet import reactor

        from presenced.web import AccessLog

        site.setAccessLog(AccessLog(os.devnull, reactor))
        site.startFactory()
        headers += (b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
                    b"Referer: https://blog.example/about\r\n")
    request = b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n"
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    for _ in range(requests):
        channel.dataReceived(request)
        if not transport.value().startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"unexpected answer: {transport.value()[:100]!r}")
        transport.clear()


def runIngest(users: int) -> None:
    import scale

    scale.ingest(users)


def buildIngest(users: int) -> None:
    import scale

    scale.connectedService()
    scale.recordedStream(users)


def operations(workload: str, size: int) -> int:
    if workload.startswith("http"):
        return size
    import scale

    return scale.recordedStream(size)[1]


def count(workload: str, size: int) -> int:
    """
    Instructions callgrind counts for one run of C{workload} at C{size}.
    """
    with tempfile.TemporaryDirectory() as directory:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={directory}/out",
             sys.executable, __file__, "--run", workload, str(size)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    return int(re.search(r"Collected : (\d+)", result.stderr).group(1))


def main(arguments: list[str]) -> None:
    if arguments[:1] == ["--run"]:
        workload, size = arguments[1], int(arguments[2])
        if workload == "ingest":
            runIngest(size)
        elif workload == "ingest-build":
            buildIngest(size)
        else:
            runHTTP(workload.partition(":")[2], size)
        return
    for workload in arguments or WORKLOADS:
        if workload not in WORKLOADS:
            raise SystemExit(f"unknown workload {workload!r}; one of {', '.join(WORKLOADS)}")
        small, large = SIZES[workload.partition(":")[0]]
        work = count(workload, large) - count(workload, small)
        if workload == "ingest":
            work -= count("ingest-build", large) - count("ingest-build", small)
        perOperation = work / (operations(workload, large) - operations(workload, small))
        unit = "request" if workload.startswith("http") else "stanza"
        print(f"{workload:<18} {perOperation:>10,.0f} instructions per {unit}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
