"""
Signed requesters end to end: the real twistd daemon against a real
Prosody, with URLs made by the signing command, subscriptions made by real
clients, and a key rotated with SIGHUP.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest_twisted

from presenced import sign

from conftest import until
from test_prosody import until_subscribed
from test_twistd import twistd


def signedQuery(key, user: str, requester: str, ttl: int = 3600) -> str:
    done = subprocess.run([sys.executable, "-m", "presenced.sign", "--key", str(key), "--ttl", str(ttl),
                           user, requester], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def writeKey(path, content: bytes):
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest_twisted.ensureDeferred
async def test_signedRequestersThroughTwistd(world, tmp_path):
    """
    With a requester key, a signed subscriber sees the user, while the
    same requester unsigned, with an expired signature or with a forged
    one gets the forbidden answer; after the key file is replaced and
    SIGHUP sent, the old key's URLs are refused and the new key's answered.
    """
    erin, frank = world.user("erin"), world.user("frank")
    erinClient = await world.login(erin)
    frankClient = await world.login(frank)
    erinClient.available(show="dnd", status="Erin signs")
    frankClient.subscribe(erin)
    await until_subscribed(erinClient, frank)

    key = writeKey(tmp_path / "requester.key", b"first key: 32 bytes of secret!!\n")
    forger = writeKey(tmp_path / "forger.key", b"a key presenced does not know...\n")
    settings = tmp_path / "presenced.ini"
    settings.write_text(world.settings(public=False, extra=f"requester_key = {key}"))
    log = tmp_path / "presenced.log"
    process = twistd("--nodaemon", "--pidfile=", f"--logfile={log}", "presenced", "-c", str(settings))
    try:
        await until(lambda: log.exists() and "Connected to the XMPP server" in log.read_text(), timeout=30)
        signed = signedQuery(key, erin, frank)
        await world.waitForText(signed, "Erin signs", timeout=20)
        assert await world.text(signedQuery(key, erin, erin)) == "Erin signs"

        secret = sign.readKey(str(key))
        refused = {
            "unsigned": f"jid={erin}&req_jid={frank}",
            "unsigned self": f"jid={erin}&req_jid={erin}",
            "expired": sign.signedQuery(secret, erin, frank, int(time.time()) - 1),
            "later expiry": signed.replace("req_exp=", "req_exp=9"),
            "forged": signedQuery(forger, erin, frank),
            "signed for another user": signedQuery(key, frank, frank).replace(
                f"jid={quote(frank)}&", f"jid={quote(erin)}&", 1),
        }
        for reason, query in refused.items():
            assert await world.text(query) == "Forbidden", reason

        writeKey(key, b"second key, also long enough....\n")
        before = log.read_text().count("Reload done")
        process.send_signal(signal.SIGHUP)
        await until(lambda: log.read_text().count("Reload done") > before, timeout=20)
        assert await world.text(signed) == "Forbidden"
        assert await world.text(signedQuery(key, erin, frank)) == "Erin signs"
    finally:
        process.terminate()
        process.communicate(timeout=30)
