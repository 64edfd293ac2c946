"""
presenced behind a real nginx, configured with etc/nginx/presenced.conf.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest_twisted
from ipaddress import ip_network
from twisted.internet import reactor, threads
from twisted.web.http_headers import Headers

from presenced.sandbox.prosody import freePort, waitForPort
from presenced.web import AccessLog

from test_twistd import ROOT


class Nginx:
    """
    nginx serving the shipped server block, proxying to presenced from
    127.0.0.2 (so that only that address is the proxy).
    """

    def __init__(self, upstreamPort: int) -> None:
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed (scripts/setup installs it)")
        self.port = freePort()
        self.directory = Path(tempfile.mkdtemp(prefix="presenced-nginx-"))
        self.directory.chmod(0o755)
        block = (ROOT / "etc" / "nginx" / "presenced.conf").read_text()
        block = block.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        block = block.replace("proxy_pass http://127.0.0.1:8080;",
                              f"proxy_pass http://127.0.0.1:{upstreamPort};\n        proxy_bind 127.0.0.2;")
        (self.directory / "presenced.conf").write_text(block)
        user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.config = self.directory / "nginx.conf"
        self.config.write_text(f"""
daemon off;
user {user};
worker_processes 1;
pid {self.directory}/nginx.pid;
error_log {self.directory}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {self.directory}/body;
    proxy_temp_path {self.directory}/proxy;
    include {self.directory}/presenced.conf;
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", str(self.config), "-p", str(self.directory)],
                                        stdin=subprocess.DEVNULL)
        waitForPort(self.port, 15, self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        shutil.rmtree(self.directory, ignore_errors=True)


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


@pytest_twisted.ensureDeferred
async def test_behindNginx(world, tmp_path):
    """
    Through nginx, the API answers unchanged, and the access log names the
    client nginx saw: not the proxy, and not what the client claimed.
    """
    user = world.user("proxied")
    client = await world.login(user)
    client.available(status="Behind a proxy")
    await world.start(public=True)
    await world.waitForText(f"jid={user}", "Behind a proxy")
    accessLog = tmp_path / "access.log"
    world.service.site.setAccessLog(AccessLog(str(accessLog), reactor))
    world.service.site.logFormatter.trusted = (ip_network("127.0.0.2"),)

    nginx = Nginx(world.port)
    try:
        url = f"http://127.0.0.1:{nginx.port}/plugins/presence/status?jid={user}&type=text"
        body = await threads.deferToThread(fetch, url, {"X-Forwarded-For": "203.0.113.9"})
    finally:
        nginx.stop()
    assert body == b"Behind a proxy"
    assert (await world.get(f"jid={user}&type=text", headers=Headers({b"X-Forwarded-For": [b"198.51.100.4"]}))).body == b"Behind a proxy"
    world.service.site.accessLog.flush()
    lines = accessLog.read_text().splitlines()
    assert len(lines) == 2
    # nginx connected from 127.0.0.2 (trusted) for the client at 127.0.0.1;
    # the direct request came from 127.0.0.1 (not trusted).
    assert [line.split(" ", 1)[0] for line in lines] == ['"127.0.0.1"', '"127.0.0.1"']


@pytest_twisted.ensureDeferred
async def test_healthDetailsFollowTheClientNginxSaw(world):
    """
    Through nginx, health details are shown by the client nginx saw: not
    by the proxy's address, nor by what the client claimed.
    """
    await world.start(public=True)
    world.service.site.logFormatter.trusted = (ip_network("127.0.0.2"),)
    health = world.service.site.health
    nginx = Nginx(world.port)
    try:
        url = f"http://127.0.0.1:{nginx.port}/plugins/presence/health"
        health.detailsFrom = (ip_network("127.0.0.2"),)
        claimed = json.loads(await threads.deferToThread(fetch, url, {"X-Forwarded-For": "127.0.0.2"}))
        health.detailsFrom = (ip_network("127.0.0.1"),)
        seen = json.loads(await threads.deferToThread(fetch, url))
    finally:
        nginx.stop()
    assert claimed == {"xmpp": "connected"}
    assert set(seen) == {"xmpp", "since", "users_online", "version"}


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest_twisted.ensureDeferred
async def test_nginxKeepsTheMetricsInside(world):
    """
    The shipped server block answers 404 for the metrics, which presenced
    itself serves to loopback, where nginx comes from.
    """
    await world.start(public=True)
    nginx = Nginx(world.port)
    try:
        direct = await threads.deferToThread(status, f"http://127.0.0.1:{world.port}/plugins/presence/metrics")
        proxied = await threads.deferToThread(status, f"http://127.0.0.1:{nginx.port}/plugins/presence/metrics")
        other = await threads.deferToThread(status, f"http://127.0.0.1:{nginx.port}/plugins/presence/health")
    finally:
        nginx.stop()
    assert (direct, proxied, other) == (200, 404, 200)
