"""
Tests for L{presenced.sign}: requester signatures, their checking, the
README's examples and the signing command.
"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from twisted.internet import task

from presenced import sign

KEY = b"0123456789abcdef0123456789abcdef"
README = Path(__file__).parent.parent / "README.md"

# Made with: printf 'presenced-requester-v1\nalice@example.com\nbob@example.com\n1800000000' |
#   openssl dgst -sha256 -mac HMAC -macopt key:0123456789abcdef0123456789abcdef -binary |
#   base64 | tr '+/' '-_' | tr -d '='
VECTOR = "6FfZxzljwSjOBMIUB7hI8kKCRJ0qQfJoiYeNoVE9fOE"


def check(keys=(KEY,), required=True, now=1_799_999_000):
    clock = task.Clock()
    clock.advance(now)
    return sign.RequesterCheck(keys, required, clock)


def test_signatureMatchesAnIndependentImplementation():
    """
    The signature is the documented HMAC-SHA256, as openssl computes it.
    """
    assert sign.signature(KEY, "alice@example.com", "bob@example.com", 1800000000) == VECTOR


def test_validSignatureProvesTheRequester():
    """
    A signature by the key over the user, requester and a future expiry
    proves the requester.
    """
    assert check().proven("alice@example.com", "bob@example.com", "1800000000", VECTOR) == "bob@example.com"


def test_noRequesterIsNobody():
    """
    A request naming nobody proves nobody, and is not refused for it.
    """
    assert check().proven("alice@example.com", None, None, None) is None


@pytest.mark.parametrize("user, requester, expires, signed", [
    ("alice@example.com", "bob@example.com", None, None),
    ("alice@example.com", "bob@example.com", "1800000000", None),
    ("alice@example.com", "bob@example.com", None, VECTOR),
    ("alice@example.com", "carol@example.com", "1800000000", VECTOR),
    ("carol@example.com", "bob@example.com", "1800000000", VECTOR),
    ("alice@example.com", "bob@example.com", "1800000001", VECTOR),
    ("alice@example.com", "bob@example.com", "1800000000", VECTOR.lower()),
    ("alice@example.com", "bob@example.com", "1800000000", VECTOR + "="),
    ("alice@example.com", "bob@example.com", "01800000000", VECTOR),
    ("alice@example.com", "bob@example.com", "1800000000.0", VECTOR),
    ("alice@example.com", "bob@example.com", "1800000000", "é" * 43),
    ("alice@example.com", "bob@example.com", "", ""),
])
def test_anythingElseIsUnproven(user, requester, expires, signed):
    """
    Unsigned (when required), half-signed, for someone else, altered or
    garbled: unproven.
    """
    assert check().proven(user, requester, expires, signed) is sign.UNPROVEN


def test_expiredSignatureIsUnproven():
    """
    A signature stops proving anything at its expiry.
    """
    assert check(now=1_800_000_000).proven("alice@example.com", "bob@example.com", "1800000000",
                                           VECTOR) is sign.UNPROVEN


def test_signatureWithoutKeysIsUnproven():
    """
    With no key to check it with, a signature proves nothing.
    """
    assert check(keys=(), required=False).proven(
        "alice@example.com", "bob@example.com", "1800000000", VECTOR) is sign.UNPROVEN


def test_unsignedRequesterBelievedWhenNotRequired():
    """
    When signatures are optional, an unsigned requester is taken at its
    word, as the Openfire API does.
    """
    assert check(required=False).proven("alice@example.com", "bob@example.com", None, None) == "bob@example.com"


def test_secondKeyIsAccepted():
    """
    During a rotation, a signature by the second key proves the requester.
    """
    assert check(keys=(b"another key of enough bytes", KEY)).proven(
        "alice@example.com", "bob@example.com", "1800000000", VECTOR) == "bob@example.com"


def test_readKey(tmp_path):
    """
    A key file's bytes, without surrounding whitespace.
    """
    path = tmp_path / "key"
    path.write_bytes(b"  " + KEY + b"\n")
    path.chmod(0o600)
    assert sign.readKey(str(path)) == KEY


@pytest.mark.parametrize("content, mode, why", [
    (KEY, 0o604, "readable by everyone"),
    (b"short key\n", 0o600, "fewer than 16 bytes"),
])
def test_unusableKeys(tmp_path, content, mode, why):
    """
    A key file readable by everyone, or too short, is refused.
    """
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(sign.UnusableKey, match=why):
        sign.readKey(str(path))


def _readmeBlock(language):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Signed requesters"):]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def _proves(url):
    query = {name: values[0] for name, values in parse_qs(url.partition("?")[2]).items()}
    expires = int(query["req_exp"])
    return check(now=expires - 3599).proven(query["jid"], query["req_jid"], query["req_exp"], query["req_sig"])


def test_readmePythonExampleIsAccepted():
    """
    The README's Python signing example makes URLs presenced accepts, and
    it is no longer than ten lines.
    """
    code = _readmeBlock("python")
    assert len(code.strip().splitlines()) <= 10
    namespace = {}
    exec(code, namespace)
    url = namespace["presence_url"](KEY, "alice@example.com", "bob@example.com")
    assert url.startswith("https://presence.example.com/plugins/presence/status?")
    assert _proves(url) == "bob@example.com"


def test_readmeJavaScriptExampleIsAccepted():
    """
    The README's Node signing example makes URLs presenced accepts, and it
    is no longer than ten lines.
    """
    code = _readmeBlock("js")
    assert len(code.strip().splitlines()) <= 10
    program = code + '\nconsole.log(presenceURL(process.argv[1], "alice@example.com", "bob@example.com"));\n'
    url = subprocess.run(["node", "-e", program, KEY.decode()], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert _proves(url) == "bob@example.com"


def runSign(*args):
    return subprocess.run([sys.executable, "-m", "presenced.sign", *args], capture_output=True, text=True)


def test_commandPrintsASignedURL(tmp_path):
    """
    python -m presenced.sign prints a URL whose requester is proven for
    the TTL asked for, with both JIDs normalised.
    """
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    done = runSign("--key", str(path), "--ttl", "3600", "--url", "https://presence.example.com/s",
                   "Alice@Example.com/phone", "bob@example.com")
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith("https://presence.example.com/s?jid=alice%40example.com&req_jid=bob%40example.com&")
    assert _proves(url) == "bob@example.com"


def test_commandRefusesBadInput(tmp_path):
    """
    A bad key, JID or TTL is a one-line error and exit status 2.
    """
    path = tmp_path / "key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    for args, why in [
        (["--key", str(tmp_path / "none"), "a@example.com", "b@example.com"], "cannot read"),
        (["--key", str(path), "a@@example.com", "b@example.com"], "jid is not a valid JID"),
        (["--key", str(path), "a@example.com", "example.com"], "req_jid must name a user"),
        (["--key", str(path), "--ttl", "0", "a@example.com", "b@example.com"], "--ttl must be positive"),
    ]:
        done = runSign(*args)
        assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_keyWritableByOthersIsRefused(tmp_path):
    """
    A key file that others than its owner can change is refused: whoever
    could write it could sign for anyone.
    """
    path = tmp_path / "key"
    path.write_bytes(KEY)
    for mode in (0o602, 0o620):
        path.chmod(mode)
        with pytest.raises(sign.UnusableKey, match="changed by others"):
            sign.readKey(str(path))


def test_commandRefusesTTLsNoRequestCouldCarry(tmp_path):
    """
    A TTL that would make an expiry longer than presenced accepts is
    refused rather than printed as a URL that never works.
    """
    path = tmp_path / "key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    done = runSign("--key", str(path), "--ttl", "99999999999999", "a@example.com", "b@example.com")
    assert done.returncode == 2 and "--ttl must be positive" in done.stderr


def test_commandAppendsToAURLWithAQuery(tmp_path):
    """
    With --url already holding a query, the signed parameters are added to
    it with &.
    """
    path = tmp_path / "key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    done = runSign("--key", str(path), "--url", "https://h.example/status?type=text", "a@example.com", "b@example.com")
    assert done.stdout.startswith("https://h.example/status?type=text&jid=a%40example.com&req_jid=b%40example.com&")
    assert _proves(done.stdout.strip()) == "b@example.com"
