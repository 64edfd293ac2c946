"""
Avatars: users' pictures, read from their vCards (XEP-0054, announced by
the XEP-0153 hash in presence) and kept in a bounded cache.

Only pictures that are PNG, JPEG, GIF or WebP by their bytes, whatever
the vCard says, and at most L{MAX_PICTURE} bytes, are served; anything
else, like a vCard without a photo or one that cannot be read, gives no
picture, and the web side answers with the default one.
"""

from __future__ import annotations

import presenced.wokkel_compat  # noqa: F401  (must precede wokkel)

import binascii
import hashlib
from collections import OrderedDict
from typing import Callable, NamedTuple, Union

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel.generic import Request
from wokkel.subprotocols import XMPPHandler

from presenced.link import LinkMonitor

NS_VCARD = "vcard-temp"
MAX_PICTURE = 256 * 1024

#: Seconds what a vCard read found is trusted while presence announces
#: no other picture.
READ_TTL = 300.0

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", b"image/png"),
    (b"\xff\xd8\xff", b"image/jpeg"),
    (b"GIF87a", b"image/gif"),
    (b"GIF89a", b"image/gif"),
)


class Picture(NamedTuple):
    """
    An avatar that may be served: its type, as its bytes tell it, and
    its bytes.
    """

    contentType: bytes
    data: bytes


def sniffPicture(data: bytes) -> Picture | None:
    """
    C{data} as a L{Picture} if it is a PNG, JPEG, GIF or WebP image of at
    most L{MAX_PICTURE} bytes, by its first bytes; else C{None}.
    """
    if len(data) > MAX_PICTURE:
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Picture(b"image/webp", data)
    for signature, contentType in _SIGNATURES:
        if data.startswith(signature):
            return Picture(contentType, data)
    return None


class _VCardRequest(Request):
    stanzaType = "get"

    def toElement(self) -> domish.Element:
        element = super().toElement()
        element.addElement((NS_VCARD, "vCard"))
        return element


def photoFromVCard(iq: domish.Element) -> Picture | None:
    """
    The picture in the C{<PHOTO><BINVAL/>} of a vCard result, if there
    is one that may be served.
    """
    for vcard in iq.elements(NS_VCARD, "vCard"):
        for photo in vcard.elements(NS_VCARD, "PHOTO"):
            for binval in photo.elements(NS_VCARD, "BINVAL"):
                text = "".join(str(binval).split())
                if len(text) > (MAX_PICTURE + 2) // 3 * 4:
                    return None
                try:
                    data = binascii.a2b_base64(text.encode("ascii"))
                except (binascii.Error, UnicodeEncodeError):
                    return None
                return sniffPicture(data)
    return None


class VCardReader(XMPPHandler):
    """
    Reads users' vCard photos over the XMPP link.

    @ivar timeout: seconds to wait for the server's answer.
    """

    def __init__(self, link: LinkMonitor, timeout: float) -> None:
        super().__init__()
        self.link = link
        self.timeout = timeout

    def photo(self, user: str) -> defer.Deferred[Picture | None]:
        """
        The picture in C{user}'s vCard; C{None} when there is none that
        may be served, the server answers with an error, or the answer
        does not come in time.  Never fails.
        """
        if not self.link.connected:
            return defer.succeed(None)
        request = _VCardRequest(recipient=JID(user))
        request.timeout = self.timeout
        d = self.request(request)
        d.addCallbacks(photoFromVCard, lambda failure: None)
        return d


#: What L{AvatarCache.picture} gives: at once, or later.
Found = Union[Picture, None, defer.Deferred]


class AvatarCache:
    """
    Users' pictures, read through C{read} and kept for later answers.

    Pictures are kept by their SHA-1, the hash that XEP-0153 announces in
    presence, for as long as they stay among the most recently used
    within L{maxBytes}: a user whose presence announces the hash of a
    kept picture gets it without a read.  The hash is computed here, never
    taken from what a user announces, so that nobody can have their
    picture kept under someone else's hash.  What a read found for a user
    (a picture or none) is trusted for C{ttl} seconds while their
    presence announces the same hash as when it was read.  Concurrent
    questions about one user share one read.

    @ivar maxBytes: the most picture bytes kept in all.
    @ivar maxUsers: the most users whose last read is remembered.
    """

    maxBytes = 16 * 1024 * 1024
    maxUsers = 10_000

    def __init__(self, read: Callable[[str], defer.Deferred[Picture | None]], clock: IReactorTime,
                 ttl: float) -> None:
        self.read = read
        self.clock = clock
        self.ttl = ttl
        self._pictures: OrderedDict[str, Picture] = OrderedDict()
        self._bytes = 0
        self._reads: OrderedDict[str, tuple[float, str | None, str | None]] = OrderedDict()
        self._inFlight: dict[str, list[defer.Deferred]] = {}

    def picture(self, user: str, announced: str | None) -> Found:
        """
        C{user}'s picture, or C{None} when they have none that may be
        served: at once when known, else a Deferred that never fails.

        @param announced: the hash C{user}'s presence announces, if any.
        """
        if announced:
            found = self._kept(announced)
            if found is not None:
                return found
        entry = self._reads.get(user)
        if entry is not None:
            expires, readFor, digest = entry
            if expires > self.clock.seconds() and readFor == announced:
                if digest is None:
                    return None
                found = self._kept(digest)
                if found is not None:
                    return found
        waiting: defer.Deferred = defer.Deferred()
        waiters = self._inFlight.get(user)
        if waiters is not None:
            waiters.append(waiting)
            return waiting
        self._inFlight[user] = [waiting]
        self.read(user).addBoth(self._read, user, announced)
        return waiting

    def _kept(self, digest: str) -> Picture | None:
        found = self._pictures.get(digest)
        if found is not None:
            self._pictures.move_to_end(digest)
        return found

    def _read(self, result: Picture | None | Failure, user: str, announced: str | None) -> None:
        picture = None if isinstance(result, Failure) else result
        digest = None
        if picture is not None:
            digest = hashlib.sha1(picture.data).hexdigest()
            self._keep(digest, picture)
        if self.ttl > 0:
            self._reads.pop(user, None)
            self._reads[user] = (self.clock.seconds() + self.ttl, announced, digest)
            while len(self._reads) > self.maxUsers:
                self._reads.popitem(last=False)
        for waiting in self._inFlight.pop(user):
            waiting.callback(picture)

    def _keep(self, digest: str, picture: Picture) -> None:
        old = self._pictures.pop(digest, None)
        if old is not None:
            self._bytes -= len(old.data)
        self._pictures[digest] = picture
        self._bytes += len(picture.data)
        while self._bytes > self.maxBytes:
            _, dropped = self._pictures.popitem(last=False)
            self._bytes -= len(dropped.data)

    def clear(self) -> None:
        """
        Forget every picture and read.
        """
        self._pictures.clear()
        self._bytes = 0
        self._reads.clear()
