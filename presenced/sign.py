"""
Signed requesters: proof that the web site embedding a status answer
vouches for C{req_jid}.

A web site that knows who its visitor is signs C{jid}, C{req_jid} and an
expiry with a key it shares with presenced.  presenced believes the
requester only when the signature matches one of its keys and has not
expired.  The signed message is the UTF-8 encoding of::

    presenced-requester-v1 LF jid LF req_jid LF req_exp

where both JIDs are normalised bare JIDs and C{req_exp} is the expiry in
Unix seconds, written in decimal; the signature is HMAC-SHA256 of it,
in URL-safe base64 without padding.

Run as C{python -m presenced.sign --key PATH jid req_jid} it prints a
signed query (or URL, with C{--url}).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import stat
import sys
import time
from typing import Sequence
from urllib.parse import urlencode

from twisted.internet.interfaces import IReactorTime

MESSAGE_PREFIX = "presenced-requester-v1"
MIN_KEY_BYTES = 16
MAX_EXPIRY_DIGITS = 12
#: The longest validity the signing command gives: ten years.
MAX_TTL = 10 * 365 * 86400


class UnusableKey(Exception):
    """
    A requester key file cannot be used; the message says why.
    """


def readKey(path: str) -> bytes:
    """
    The key in the file at C{path}: its bytes, surrounding whitespace
    removed.

    @raise UnusableKey: when the file cannot be read, is readable by
        everyone, writable by anyone but its owner, or holds fewer than
        L{MIN_KEY_BYTES} bytes.
    """
    try:
        with open(path, "rb") as keyFile:
            mode = os.fstat(keyFile.fileno()).st_mode
            key = keyFile.read(64 * 1024).strip()
    except OSError as e:
        raise UnusableKey(f"cannot read {path}: {e.strerror}") from None
    if mode & stat.S_IROTH:
        raise UnusableKey(f"{path} is readable by everyone; make it readable by presenced only (chmod o-r)")
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        raise UnusableKey(f"{path} can be changed by others than its owner; chmod go-w")
    if len(key) < MIN_KEY_BYTES:
        raise UnusableKey(f"{path} holds fewer than {MIN_KEY_BYTES} bytes; use a long random key")
    return key


def message(user: str, requester: str, expires: int) -> bytes:
    """
    The bytes a requester signature covers.
    """
    return f"{MESSAGE_PREFIX}\n{user}\n{requester}\n{expires}".encode("utf-8")


def signature(key: bytes, user: str, requester: str, expires: int) -> str:
    """
    The C{req_sig} for C{requester} asking about C{user} until C{expires}.
    """
    digest = hmac.new(key, message(user, requester, expires), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Unproven:
    """
    The type of L{UNPROVEN}.
    """

    def __repr__(self) -> str:
        return "UNPROVEN"


UNPROVEN = Unproven()
"""
A request names a requester it cannot speak for: it gets the refused answer.
"""


class RequesterCheck:
    """
    Decides which requester a status request proves.

    @ivar keys: the keys a signature may be made with (two during a key
        rotation); none when signatures are not in use.
    @ivar required: whether an unsigned requester is refused.
    """

    def __init__(self, keys: Sequence[bytes], required: bool, clock: IReactorTime) -> None:
        self.keys = tuple(keys)
        self.required = required
        self.clock = clock

    @classmethod
    def fromSettings(cls, presence, clock: IReactorTime) -> RequesterCheck:
        """
        The check that C{[presence]} settings ask for.
        """
        return cls(presence.requester_keys, presence.require_signature, clock)

    def mayProve(self, expires: str | None, signed: str | None) -> bool:
        """
        Whether a request with this C{req_exp} and C{req_sig} could prove a
        requester at all, before the costly steps (preparing the JIDs,
        computing the signature): it is unsigned where that is allowed, or
        signed, with keys to check it, and not expired.
        """
        if expires is None and signed is None:
            return not self.required
        if not (self.keys and expires and signed) or not _isExpiry(expires):
            return False
        return int(expires) > self.clock.seconds()

    def proven(self, user: str, requester: str | None, expires: str | None,
               signed: str | None) -> str | None | Unproven:
        """
        Who the request speaks for: C{requester}, C{None} when it names
        nobody, or L{UNPROVEN} when it names a requester it cannot speak
        for.

        An unsigned requester is believed unless signatures are required.
        A signed one is believed when the signature is one of the keys'
        for C{user}, C{requester} and C{expires}, and C{expires} has not
        passed.
        """
        if requester is None:
            return None
        if not self.mayProve(expires, signed):
            return UNPROVEN
        if expires is None and signed is None:
            return requester
        given = signed.encode("ascii", "replace")
        for key in self.keys:
            if hmac.compare_digest(signature(key, user, requester, int(expires)).encode("ascii"), given):
                return requester
        return UNPROVEN


def _isExpiry(text: str) -> bool:
    return 0 < len(text) <= MAX_EXPIRY_DIGITS and text.isascii() and text.isdigit() and text[0] != "0"


def signedQuery(key: bytes, user: str, requester: str, expires: int) -> str:
    """
    The query string of a status request for C{user} signed for C{requester}.
    """
    return urlencode({
        "jid": user, "req_jid": requester, "req_exp": str(expires),
        "req_sig": signature(key, user, requester, expires),
    })


def main(argv: Sequence[str] | None = None) -> None:
    """
    Print a signed status query or URL.
    """
    from presenced.jids import InvalidJID, parseBare

    parser = argparse.ArgumentParser(
        prog="python -m presenced.sign",
        description="Print a status request in which the web site vouches for req_jid.",
    )
    parser.add_argument("--key", required=True, metavar="PATH", help="the requester_key file")
    parser.add_argument("--ttl", type=int, default=3600, metavar="SECONDS",
                        help="how long the signature is valid (default: 3600)")
    parser.add_argument("--url", metavar="BASE",
                        help="the status URL to append the query to, e.g. https://host/plugins/presence/status")
    parser.add_argument("jid", help="the user asked about")
    parser.add_argument("req_jid", help="who asks")
    args = parser.parse_args(argv)
    if not 0 < args.ttl <= MAX_TTL:
        parser.error(f"--ttl must be positive (seconds), at most {MAX_TTL}")
    try:
        key = readKey(args.key)
    except UnusableKey as e:
        parser.error(str(e))
    jids = []
    for name in ("jid", "req_jid"):
        try:
            local, domain, _ = parseBare(getattr(args, name))
        except InvalidJID as e:
            parser.error(f"{name} is not a valid JID: {e}")
        if local is None:
            parser.error(f"{name} must name a user (user@domain)")
        jids.append(f"{local}@{domain}")
    query = signedQuery(key, jids[0], jids[1], int(time.time()) + args.ttl)
    if args.url:
        query = args.url + ("&" if "?" in args.url else "?") + query
    print(query)


if __name__ == "__main__":
    main(sys.argv[1:])
