"""
What browsers do with presenced, against a real Prosody over real HTTP: a
page on another origin asks (a preflight, then the request itself), and a
cached icon is revalidated as the user's presence changes.
"""

from __future__ import annotations

import pytest_twisted
from twisted.web.http_headers import Headers

from presenced.answers import loadImages
from presenced.config import defaultImageDirectory
from presenced.presence import State

IMAGES = loadImages(defaultImageDirectory())
PAGE = "https://blog.example"


@pytest_twisted.ensureDeferred
async def test_crossOriginFetchWithItsPreflight(world):
    """
    A page on another origin that fetches the text with If-None-Match is
    let do it by the preflight, then may read the answer and its tag.
    """
    alice = world.user("alice")
    await world.start()
    client = await world.login(alice)
    client.available(status="Writing")
    await world.waitForText(f"jid={alice}", "Writing")

    preflight = await world.get(f"jid={alice}&type=text", method=b"OPTIONS", headers=Headers({
        "Origin": [PAGE], "Access-Control-Request-Method": ["GET"],
        "Access-Control-Request-Headers": ["if-none-match"]}))
    assert (preflight.code, preflight.body) == (204, b"")
    assert preflight.header("access-control-allow-origin") == "*"
    assert "GET" in preflight.header("access-control-allow-methods")
    assert "if-none-match" in preflight.header("access-control-allow-headers").lower()
    assert int(preflight.header("access-control-max-age")) > 0

    answer = await world.get(f"jid={alice}&type=text", headers=Headers({
        "Origin": [PAGE], "If-None-Match": ['"not-this-one"']}))
    assert (answer.code, answer.body) == (200, b"Writing")
    assert answer.header("access-control-allow-origin") == "*"
    assert answer.header("access-control-expose-headers") == "ETag, Last-Modified"
    assert answer.header("etag").startswith('"')
    assert "access-control-allow-credentials" not in answer.headers


@pytest_twisted.ensureDeferred
async def test_iconRevalidatedUntilThePresenceChanges(world):
    """
    A cached icon revalidated with its tag is not sent again; once the
    user changes their presence, the same tag gets the new icon and a new
    tag.
    """
    bob = world.user("bob")
    await world.start()
    client = await world.login(bob)
    client.available(show="away")
    await world.waitForText(f"jid={bob}", "Away")

    first = await world.get(f"jid={bob}")
    assert (first.code, first.body) == (200, IMAGES[State.AWAY].data)
    tag = first.header("etag")
    again = await world.get(f"jid={bob}", headers=Headers({"If-None-Match": [tag]}))
    assert (again.code, again.body, again.header("etag")) == (304, b"", tag)
    assert again.header("cache-control") == first.header("cache-control") == "no-cache"
    byDate = await world.get(f"jid={bob}", headers=Headers({"If-Modified-Since": [first.header("last-modified")]}))
    assert (byDate.code, byDate.body) == (304, b"")

    client.available(show="dnd")
    await world.waitForText(f"jid={bob}", "Do not disturb")
    changed = await world.get(f"jid={bob}", headers=Headers({"If-None-Match": [tag]}))
    assert (changed.code, changed.body) == (200, IMAGES[State.DND].data)
    assert changed.header("etag") != tag
