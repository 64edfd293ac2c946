"""
The demo: a throwaway Prosody with a few online users, and presenced
serving their presence, started as C{twistd -n presenced}.

Run it with C{scripts/demo}; it prints the URLs to open and runs until
interrupted (or for C{--duration} seconds).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.internet import defer, task
from twisted.web import resource as webresource, server, static

from presenced.config import defaultImageDirectory

from presenced.sandbox.client import SandboxClient
from presenced.sandbox.prosody import Prosody, freePort, waitForPort

PASSWORD = "demo-password"

#: user: (resource, show, status) of each online session.
SESSIONS = {
    "alice": [("laptop", "chat", "Writing the release notes")],
    "bob": [("phone", "away", "At lunch")],
    "carol": [("desktop", "dnd", "In a meeting until 3pm")],
    # Two clients: the more available one is shown, whatever the priorities.
    "erin": [("laptop", "away", "Stepped out"), ("phone", "chat", "Ask me anything")],
    "dave": [],
    # What users write is shown as text, never run.
    "mallory": [("laptop", None, "<img src=x onerror=alert(1)> not a picture")],
}

#: How Bob's status changes while the demo runs, to show that answers are live.
BOB_CYCLE = [("away", "At lunch"), (None, "Back at my desk"), ("xa", "Gone home")]


def writeSettings(prosody: Prosody, port: int, public: bool) -> Path:
    """
    Write a presenced INI file for the sandbox server, in a directory of
    its own, with a store in its C{state} directory.
    """
    path = Path(tempfile.mkdtemp(prefix="presenced-demo-")) / "presenced.ini"
    (path.parent / "state").mkdir()
    path.write_text(
        f"""\
[xmpp]
jid = {prosody.component}
secret = {prosody.secret}
host = 127.0.0.1
port = {prosody.componentPort}
domain = {prosody.domain}

[http]
listen = tcp:{port}:interface=127.0.0.1

[presence]
public = {"true" if public else "false"}
unavailable_status = Not online
store = {path.parent / "state" / "presence.sqlite"}
""",
        encoding="utf-8",
    )
    return path


def startPresenced(settings: Path, port: int) -> subprocess.Popen:
    """
    Start C{twistd -n presenced} and wait until it accepts HTTP requests.
    """
    twistd = Path(sys.executable).with_name("twistd")
    process = subprocess.Popen(
        [str(twistd), "--nodaemon", "--pidfile=", "presenced", "--config", str(settings)],
        stdin=subprocess.DEVNULL,
    )
    waitForPort(port, 30, process)
    return process


def examplePage(base: str, domain: str) -> bytes:
    """
    C{etc/embed-example.html} pointed at the demo's presenced and users.
    """
    html = (Path(__file__).resolve().parents[2] / "etc" / "embed-example.html").read_text(encoding="utf-8")
    return html.replace("https://presence.example.com", base).replace("@example.com", f"@{domain}").encode("utf-8")


def serveExamplePage(reactor, html: bytes, port: int):
    """
    Serve C{html} at C{/} on another origin than presenced's, as a web
    site embedding presence would.
    """
    root = webresource.Resource()
    root.putChild(b"", static.Data(html, "text/html; charset=utf-8"))
    return reactor.listenTCP(port, server.Site(root), interface="127.0.0.1")


def publishAvatar(client: SandboxClient, picture: bytes) -> None:
    """
    Store C{picture} in the client's vCard and announce it in presence.
    """
    client.manager.send(
        "<iq type='set' id='demo-avatar'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE>"
        f"<BINVAL>{base64.b64encode(picture).decode()}</BINVAL></PHOTO></vCard></iq>")
    client.manager.send(
        "<presence><show>chat</show><status>Writing the release notes</status><priority>5</priority>"
        f"<x xmlns='vcard-temp:x:update'><photo>{hashlib.sha1(picture).hexdigest()}</photo></x></presence>")


def printURLs(base: str, domain: str, public: bool, example: str | None = None) -> None:
    status = f"{base}/plugins/presence/status"
    print("\npresenced is serving the demo users' presence. Open:\n")
    for user in SESSIONS:
        jid = f"{user}@{domain}"
        # Alice is subscribed to Bob and Carol; anyone may see themself.
        viewer = "alice" if user in ("bob", "carol") else user
        query = f"jid={jid}" if public else f"jid={jid}&req_jid={viewer}@{domain}"
        print(f"  {user:7} icon  {status}?{query}")
        print(f"  {'':7} text  {status}?{query}&type=text")
        print(f"  {'':7} xml   {status}?{query}&type=xml")
        print(f"  {'':7} json  {status}?{query}&type=json")
    print(f"\n  custom images: {status}?jid=bob@{domain}&req_jid=alice@{domain}"
          "&images=https://example.org/icons/--IMAGE--.png  (a redirect)")
    if not public:
        print(f"  refused:       {status}?jid=bob@{domain}&req_jid=dave@{domain}")
    if example is not None:
        print(f"\n  every way to embed presence, live: {example}")
    print("\nBob's status changes every 20 seconds. Ctrl-C stops the demo.\n", flush=True)


async def run(reactor, options: argparse.Namespace) -> None:
    prosody = Prosody(modules=("vcard",))
    presenced = page = None
    clients: list[SandboxClient] = []
    stop: defer.Deferred = defer.Deferred()
    cleanedUp: defer.Deferred = defer.Deferred()

    def shutdown() -> defer.Deferred:
        if not stop.called:
            stop.callback(None)
        return cleanedUp

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    try:
        prosody.start()
        for user in SESSIONS:
            prosody.register(user, PASSWORD)
        for user, sessions in SESSIONS.items():
            for resource, show, status in sessions:
                client = await SandboxClient(
                    reactor, f"{user}@{prosody.domain}/{resource}", PASSWORD, prosody.c2sPort
                ).connect()
                client.available(show=show, status=status, priority=5 if resource == "laptop" else 0)
                clients.append(client)
        await _subscribe(reactor, clients, "alice", ["bob", "carol"])
        alice = next(c for c in clients if c.jid.user == "alice")
        publishAvatar(alice, (defaultImageDirectory() / "chat.png").read_bytes())

        port = options.port or freePort()
        presenced = startPresenced(writeSettings(prosody, port, options.public), port)
        base = f"http://127.0.0.1:{port}"
        example = None
        if options.public:
            page = serveExamplePage(reactor, examplePage(base, prosody.domain), freePort())
            example = f"http://127.0.0.1:{page.getHost().port}/"
        printURLs(base, prosody.domain, options.public, example)

        bob = next(c for c in clients if c.jid.user == "bob")
        loop = task.LoopingCall(_nextBobStatus(bob))
        loop.clock = reactor
        loop.start(20, now=False)
        if options.duration:
            reactor.callLater(options.duration, lambda: stop.called or stop.callback(None))
        await stop
        loop.stop()
    finally:
        if page is not None:
            await page.stopListening()
        for client in clients:
            await client.disconnect()
        if presenced is not None:
            presenced.terminate()
            presenced.wait(15)
        prosody.cleanup()
        cleanedUp.callback(None)


async def _subscribe(reactor, clients: list[SandboxClient], subscriber: str, users: list[str]) -> None:
    """
    Give C{subscriber} a presence subscription to each of C{users}, the
    real way: they approve the request.
    """
    byUser = {c.jid.user: c for c in clients}
    for user in users:
        byUser[subscriber].subscribe(byUser[user].jid.userhost())
    await task.deferLater(reactor, 0.5)


def _nextBobStatus(bob: SandboxClient):
    states = iter(BOB_CYCLE[1:] + BOB_CYCLE)

    def change() -> None:
        nonlocal states
        try:
            show, status = next(states)
        except StopIteration:
            states = iter(BOB_CYCLE)
            show, status = next(states)
        print(f"demo: bob is now {show or 'available'}: {status}", flush=True)
        bob.available(show=show, status=status, priority=5)

    return change


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="HTTP port for presenced (default 8080; 0 picks a free one)")
    parser.add_argument("--subscribers-only", dest="public", action="store_false",
                        help="serve only the users themselves and their subscribers (public = false)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: run until Ctrl-C)")
    options = parser.parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
