"""
Tests for L{presenced.avatars} and the C{type=avatar} answer: reading
vCard photos, which pictures may be served, the cache, and the answers.
"""

import base64
import hashlib

import pytest
from twisted.internet import defer, task

from presenced.access import AccessPolicy, RosterCache, ServedScope
from presenced.answers import AnswerRenderer, defaultAvatar, loadImages
from presenced.avatars import MAX_PICTURE, AvatarCache, Picture, sniffPicture
from presenced.config import DEFAULT_LABELS, defaultImageDirectory, fromString
from presenced.presence import PresenceTracker, ResourcePresence, State
from presenced.sign import RequesterCheck
from presenced.web import HealthResource, StatusResource, buildSite

from webhelpers import Connection, request
from xmpphelpers import COMPONENT, DOMAIN, Link

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 24
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
SVG = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"


@pytest.mark.parametrize("data, contentType", [
    (PNG, b"image/png"), (JPEG, b"image/jpeg"), (GIF, b"image/gif"), (b"GIF87a" + b"\x00" * 10, b"image/gif"),
    (WEBP, b"image/webp"),
])
def test_picturesAreKnownByTheirBytes(data, contentType):
    """
    PNG, JPEG, GIF and WebP pictures are told by their first bytes.
    """
    assert sniffPicture(data) == Picture(contentType, data)


@pytest.mark.parametrize("data", [
    SVG, b"<html><script>alert(1)</script>", b"", b"RIFF\x10\x00\x00\x00WAVEfmt ", b"\x89PNG",
    PNG + b"\x00" * MAX_PICTURE,
])
def test_otherPicturesAreNotServed(data):
    """
    SVG, HTML, other files, truncated signatures and pictures over 256 KiB
    are not served.
    """
    assert sniffPicture(data) is None


def vcardResult(iqID, user, photo):
    return (f"<iq type='result' id='{iqID}' from='{user}' to='{COMPONENT}'>"
            f"<vCard xmlns='vcard-temp'>{photo}</vCard></iq>")


def sentID(link):
    sent = link.sent()
    assert "vcard-temp" in sent
    return sent, sent.split("id='")[1].split("'")[0]


@pytest.fixture
def link():
    return Link()


def test_vcardPhotoIsRead(link):
    """
    A vCard get is sent to the user's bare JID from the component; the
    photo's bytes are decoded, whitespace in them ignored, and told by
    their bytes, not by the type the vCard claims.
    """
    results = []
    link.vcards.photo(f"alice@{DOMAIN}").addBoth(results.append)
    sent, iqID = sentID(link)
    assert f"to='alice@{DOMAIN}'" in sent and f"from='{COMPONENT}'" in sent and "type='get'" in sent
    encoded = base64.b64encode(JPEG).decode()
    link.receive(vcardResult(iqID, f"alice@{DOMAIN}",
                             f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{encoded[:10]}\n {encoded[10:]}</BINVAL></PHOTO>"))
    assert results == [Picture(b"image/jpeg", JPEG)]


@pytest.mark.parametrize("photo", [
    "", "<PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO>",
    f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(SVG).decode()}</BINVAL></PHOTO>",
    "<PHOTO><BINVAL>not base64 at all!</BINVAL></PHOTO>",
    f"<PHOTO><BINVAL>{'A' * (MAX_PICTURE * 2)}</BINVAL></PHOTO>",
    "<PHOTO><BINVAL>\u00e9\u00e9\u00e9\u00e9</BINVAL></PHOTO>",
])
def test_vcardWithoutServablePhoto(link, photo):
    """
    A vCard without a photo, with a link instead of one, with an SVG that
    claims to be a PNG, bad or oversized data gives no picture.
    """
    results = []
    link.vcards.photo(f"alice@{DOMAIN}").addBoth(results.append)
    _, iqID = sentID(link)
    link.receive(vcardResult(iqID, f"alice@{DOMAIN}", photo))
    assert results == [None]


def test_vcardErrorOrSilenceGivesNoPicture(link):
    """
    An error answer, or none within the timeout, gives no picture.
    """
    results = []
    link.vcards.photo(f"alice@{DOMAIN}").addBoth(results.append)
    _, iqID = sentID(link)
    link.receive(f"<iq type='error' id='{iqID}' from='alice@{DOMAIN}'><error type='cancel'>"
                 "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    link.vcards.photo(f"bob@{DOMAIN}").addBoth(results.append)
    link.clock.advance(6)
    assert results == [None, None]


def test_vcardAnswerFromSomeoneElseIsIgnored(link):
    """
    A vCard result from anyone but the user asked is not taken.
    """
    results = []
    link.vcards.photo(f"alice@{DOMAIN}").addBoth(results.append)
    _, iqID = sentID(link)
    link.receive(vcardResult(iqID, f"mallory@{DOMAIN}",
                             f"<PHOTO><BINVAL>{base64.b64encode(PNG).decode()}</BINVAL></PHOTO>"))
    assert results == []


def test_noReadWithoutLink(link):
    """
    Without a link nothing is sent and there is no picture.
    """
    link.drop()
    results = []
    link.vcards.photo(f"alice@{DOMAIN}").addBoth(results.append)
    assert results == [None]


class Reads:
    """
    A picture source whose reads the test answers.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, user):
        d = defer.Deferred()
        self.pending.append((user, d))
        return d

    def answer(self, picture):
        user, d = self.pending.pop(0)
        d.callback(picture)
        return user


def sha1(data):
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def reads():
    return Reads()


@pytest.fixture
def cache(reads):
    return AvatarCache(reads, task.Clock(), ttl=300)


def test_pictureKeptByItsHash(cache, reads):
    """
    A picture read once is given at once to whoever announces its hash,
    without another read.
    """
    picture = Picture(b"image/png", PNG)
    results = []
    cache.picture("alice@example.test", sha1(PNG)).addCallback(results.append)
    reads.answer(picture)
    assert results == [picture]
    assert cache.picture("alice@example.test", sha1(PNG)) == picture
    assert cache.picture("bob@example.test", sha1(PNG)) == picture
    assert reads.pending == []


def test_concurrentQuestionsShareOneRead(cache, reads):
    """
    Questions about a user while a read is under way wait for it.
    """
    results = []
    cache.picture("alice@example.test", None).addCallback(results.append)
    cache.picture("alice@example.test", None).addCallback(results.append)
    assert len(reads.pending) == 1
    reads.answer(None)
    assert results == [None, None]


def test_announcingSomeoneElsesHashDoesNotLendThemYourPicture(cache, reads):
    """
    A user who announces another user's hash does not get their own
    picture kept under it: the other user still gets theirs.
    """
    mallory, alice = Picture(b"image/gif", GIF), Picture(b"image/png", PNG)
    cache.picture("mallory@example.test", sha1(PNG))
    reads.answer(mallory)
    results = []
    cache.picture("alice@example.test", sha1(PNG)).addCallback(results.append)
    reads.answer(alice)
    assert results == [alice]


def test_unannouncedReadTrustedForTTL(reads):
    """
    What a read found for a user who announces no hash, a picture or
    none, is trusted for the TTL, then read again.
    """
    clock = task.Clock()
    cache = AvatarCache(reads, clock, ttl=300)
    cache.picture("alice@example.test", None)
    reads.answer(None)
    assert cache.picture("alice@example.test", None) is None
    clock.advance(301)
    cache.picture("alice@example.test", None)
    assert len(reads.pending) == 1


def test_newHashIsReadAgain(cache, reads):
    """
    A user who announces a new hash is read again, even within the TTL.
    """
    cache.picture("alice@example.test", sha1(PNG))
    reads.answer(None)
    assert cache.picture("alice@example.test", sha1(PNG)) is None
    cache.picture("alice@example.test", sha1(GIF))
    assert len(reads.pending) == 1


def test_picturesBoundedInBytes(cache, reads):
    """
    Beyond the byte bound, the least recently used pictures are dropped.
    """
    cache.maxBytes = 2 * len(PNG)
    pictures = [Picture(b"image/png", PNG + bytes([n])) for n in range(3)]
    for number, picture in enumerate(pictures):
        cache.picture(f"u{number}@example.test", sha1(picture.data))
        reads.answer(picture)
    assert cache.picture("u2@example.test", sha1(pictures[2].data)) == pictures[2]
    assert isinstance(cache.picture("u0@example.test", sha1(pictures[0].data)), defer.Deferred)


class Site:
    """
    A site whose avatars come from reads the test answers.
    """

    def __init__(self, public=True, avatars=True):
        self.clock = task.Clock()
        self.tracker = PresenceTracker()
        self.reads = Reads()
        rosters = RosterCache(lambda user: defer.succeed(frozenset()), self.clock, ttl=30)
        self.status = StatusResource(
            self.tracker, AccessPolicy(public, rosters),
            AnswerRenderer(loadImages(defaultImageDirectory()), dict(DEFAULT_LABELS)),
            ServedScope(frozenset({DOMAIN})), RequesterCheck((), False, self.clock),
            AvatarCache(self.reads, self.clock, ttl=300))
        if not avatars:
            self.status.reconfig(fromString("[xmpp]\njid = c.example.test\nsecret = s\ndomain = example.test\n"
                                            "[http]\n[presence]\npublic = true\navatars = false\n"),
                                 loadImages(defaultImageDirectory()))
        self.site = buildSite(self.status, HealthResource(lambda: (True, {})), self.clock)

    def online(self, user, photo):
        self.tracker.available(user, ResourcePresence(resource="r", state=State.AVAILABLE, photo=photo))

    def get(self, query, method="GET"):
        return request(self.site, method, f"/plugins/presence/status?{query}&type=avatar")


def test_avatarAnswer():
    """
    type=avatar answers with the user's picture and its type.
    """
    site = Site()
    site.online("alice@example.test", sha1(JPEG))
    site.status.avatars.picture("alice@example.test", sha1(JPEG))
    site.reads.answer(Picture(b"image/jpeg", JPEG))
    response = site.get("jid=alice@example.test")
    assert (response.code, response.headers["content-type"], response.body) == (200, "image/jpeg", JPEG)


def test_avatarAnswerWaitsForTheRead():
    """
    An avatar not read yet is answered once the read is done; HEAD gets
    the headers alone.
    """
    site = Site()
    site.online("alice@example.test", None)
    connection = Connection(site.site)
    connection.send("GET", "/plugins/presence/status?jid=alice@example.test&type=avatar")
    assert connection.response() is None
    site.reads.answer(Picture(b"image/gif", GIF))
    response = connection.response()
    assert (response.code, response.headers["content-type"], response.body) == (200, "image/gif", GIF)
    head = site.get("jid=alice@example.test", method="HEAD")
    assert (head.code, head.headers["content-length"], head.body) == (200, str(len(GIF)), b"")


def defaultAnswer(response):
    return (response.code, response.headers, response.body)


def test_defaultAvatarIdenticalForEveryReason():
    """
    A user without a picture, one whose read found nothing, one who says
    they have none, avatars turned off, a user of another domain and a
    refused request all get the same default picture, headers included.
    """
    public, private, off = Site(), Site(public=False), Site(avatars=False)
    public.online("alice@example.test", "")
    public.online("bob@example.test", None)
    public.status.avatars.picture("bob@example.test", None)
    public.reads.answer(None)
    private.online("carol@example.test", sha1(PNG))
    off.online("dave@example.test", sha1(PNG))
    answers = [
        public.get("jid=alice@example.test"),
        public.get("jid=bob@example.test"),
        public.get("jid=someone@elsewhere.test"),
        private.get("jid=carol@example.test&req_jid=eve@example.test"),
        private.get("jid=carol@example.test"),
        off.get("jid=dave@example.test"),
    ]
    for response in answers:
        response.headers.pop("date", None)
    assert all(defaultAnswer(r) == defaultAnswer(answers[0]) for r in answers)
    assert answers[0].body == defaultAvatar().data and answers[0].headers["content-type"] == "image/png"
    assert private.reads.pending == [] and off.reads.pending == []
