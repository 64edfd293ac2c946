"""
Avatars from a real Prosody: real clients publish vCard photos and
announce them in presence; real HTTP requests get them.
"""

from __future__ import annotations

import base64
import hashlib

import pytest_twisted
from twisted.internet import reactor, task

from presenced.answers import defaultAvatar, loadImages
from presenced.config import defaultImageDirectory
from presenced.presence import State

from test_client_mode import shareWith, startClientMode

PICTURE = loadImages(defaultImageDirectory())[State.CHAT].data
SVG = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"


def publish(client, data: bytes, claimedType: str) -> None:
    """
    Store C{data} as the photo of the client's vCard, and announce its
    hash in presence (XEP-0153).
    """
    client.manager.send(
        "<iq type='set' id='vcard-set'><vCard xmlns='vcard-temp'><FN>Test</FN>"
        f"<PHOTO><TYPE>{claimedType}</TYPE><BINVAL>{base64.b64encode(data).decode()}</BINVAL></PHOTO>"
        "</vCard></iq>")
    client.manager.send(
        "<presence><x xmlns='vcard-temp:x:update'>"
        f"<photo>{hashlib.sha1(data).hexdigest()}</photo></x></presence>")


async def avatarOf(world, user: str, expected: bytes, timeout: float = 10.0):
    """
    Poll the avatar answer until its body is C{expected}.
    """
    answer = None
    for _ in range(int(timeout / 0.1)):
        answer = await world.get(f"jid={user}&type=avatar")
        if answer.body == expected:
            return answer
        await task.deferLater(reactor, 0.1)
    raise AssertionError(f"avatar answer stayed {answer.body[:40]!r}…")


@pytest_twisted.ensureDeferred
async def test_publishedAvatarIsServed(world):
    """
    A photo a real client stores in its vCard and announces in presence is
    served by type=avatar as the PNG it is; a user without one, and a
    refused request, get the default picture.
    """
    alice, bob = world.user("alice"), world.user("bob")
    await world.start()
    client = await world.login(alice)
    publish(client, PICTURE, "image/png")
    answer = await avatarOf(world, alice, PICTURE)
    assert (answer.code, answer.header("content-type")) == (200, "image/png")
    await world.login(bob)
    assert (await world.get(f"jid={bob}&type=avatar")).body == defaultAvatar().data
    assert (await world.get("jid=nobody@elsewhere.test&type=avatar")).body == defaultAvatar().data


@pytest_twisted.ensureDeferred
async def test_svgAvatarIsNeverServed(world):
    """
    An SVG stored as a vCard photo that claims to be a PNG is not served:
    the default picture is.
    """
    mallory = world.user("mallory")
    await world.start()
    client = await world.login(mallory)
    publish(client, SVG, "image/png")
    await world.waitForText(f"jid={mallory}", "Available")
    answer = await world.get(f"jid={mallory}&type=avatar")
    assert (answer.code, answer.header("content-type"), answer.body) == (200, "image/png", defaultAvatar().data)


@pytest_twisted.ensureDeferred
async def test_avatarInClientMode(world):
    """
    In client mode the account reads the vCard of a user who added it, and
    serves their photo; a user who did not add it gets the default
    picture, whatever photo they announce.
    """
    bot, sharer, stranger = world.user("bot"), world.user("sharer"), world.user("stranger")
    await startClientMode(world, bot)
    sharing = await shareWith(world, bot, sharer, "Sharing my face")
    publish(sharing, PICTURE, "image/png")
    answer = await avatarOf(world, sharer, PICTURE)
    assert (answer.code, answer.header("content-type")) == (200, "image/png")
    other = await world.login(stranger)
    publish(other, PICTURE, "image/png")
    await task.deferLater(reactor, 1.0)
    assert (await world.get(f"jid={stranger}&type=avatar")).body == defaultAvatar().data
