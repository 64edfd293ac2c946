"""
Tests for L{presenced.jids}: JIDs from untrusted text.
"""

import random

import pytest
from twisted.words.protocols.jabber.jid import JID

from presenced import jids

#: Characters that JID parsing treats specially, or that stringprep maps,
#: folds, refuses or reorders.
TRICKY = "@/.\u3002\uff0e-aZ9 \x00\x7f\u00df\u00e9\u0301\u200b\u00ad\ufb01\u05d0\u0627\u2028\ud800\U0001f600\ufffd"


def randomText(rng: random.Random) -> str:
    length = rng.randrange(0, 12)
    return "".join(
        rng.choice(TRICKY) if rng.random() < 0.8 else chr(rng.randrange(0x110000))
        for _ in range(length)
    )


def test_anyTextIsAJIDOrInvalid():
    """
    Parsing any text gives either a JID or InvalidJID, never another error.
    """
    rng = random.Random(7622)
    for _ in range(20_000):
        text = randomText(rng)
        try:
            jids.parse(text)
        except jids.InvalidJID:
            pass


def test_validJIDsAsTwisted():
    """
    A JID that Twisted parses to non-empty parts is parsed to the same
    parts.
    """
    rng = random.Random(6122)
    compared = 0
    for _ in range(20_000):
        text = randomText(rng)
        try:
            expected = JID(text)
        except Exception:
            continue
        if "" in (expected.user, expected.resource):
            continue
        compared += 1
        assert jids.parse(text) == (expected.user, expected.host, expected.resource)
    assert compared > 100


@pytest.mark.parametrize("text, reason", [
    ("a@.", "Empty label in hostname"),
    ("a..b", "Empty label in hostname"),
    ("\u200b", "Empty label in hostname"),
    ("a@", "Server address required."),
    ("a b@example.test", "Invalid character in username"),
    ("\u200b@example.test", "Empty username"),
    ("a@example.test/\u200b", "Empty resource"),
])
def test_invalidJIDs(text, reason):
    """
    A text that is not a JID is refused with the reason.
    """
    with pytest.raises(jids.InvalidJID) as caught:
        jids.parse(text)
    assert str(caught.value) == reason


@pytest.mark.parametrize("text", [
    "a" * 1024 + "@example.test",
    "alice@" + "d" * 1024,
    "alice@example.test/" + "r" * 1024,
    "\u00e9" * 512 + "@example.test",
    "\u2177" * 300 + "@example.test",
])
def test_partsLongerThan1023BytesAreRefused(text):
    """
    A local part, domain or resource longer than 1023 bytes, as written
    or once prepared, is not a JID.
    """
    with pytest.raises(jids.InvalidJID, match="longer than 1023 bytes"):
        jids.parse(text)


def test_partsOf1023BytesAreJIDs():
    """
    Parts of exactly 1023 bytes are accepted.
    """
    local, domain, resource = "a" * 1023, "d" * 1023, "r" * 1023
    assert jids.parse(f"{local}@{domain}/{resource}") == (local, domain, resource)


def test_bareJIDLeavesTheResourceOut():
    """
    The bare JID of a text does not depend on its resource, valid or not.
    """
    assert jids.parseBare("Alice@Example.test/\x00 not a resource") == ("alice", "example.test", None)


def test_bareJIDPreparesTheLocalPartOnlyOnTheDomainsGiven():
    """
    Given domains, the local part is prepared on those only; the domain is
    always prepared.
    """
    served = frozenset({"example.test"})
    assert jids.parseBare("Alice@Example.TEST", served) == ("alice", "example.test", None)
    assert jids.parseBare("Al ice@Elsewhere.TEST", served) == ("Al ice", "elsewhere.test", None)
    with pytest.raises(jids.InvalidJID):
        jids.parseBare("Al ice@example.test", served)
    with pytest.raises(jids.InvalidJID):
        jids.parseBare("alice@else..where", served)


def test_partsAreNormalised():
    """
    Each part is prepared with its own profile; empty local parts and
    resources are left out, as Twisted does.
    """
    assert jids.parse("Alice@Example.TEST/Home") == ("alice", "example.test", "Home")
    assert jids.parse("@example.test/") == (None, "example.test", None)
    assert jids.parse("example.test/a@b").full == "example.test/a@b"
    assert jids.parse("Bob@example.test/x").bare == "bob@example.test"
