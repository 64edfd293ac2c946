"""
presenced's XMPP link against a real Prosody, with hostile users on the
server: forged answers and oversized stanzas.
"""

from __future__ import annotations

import pytest_twisted

from conftest import until

GONE = "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"


@pytest_twisted.ensureDeferred
async def test_forgedPingErrorDoesNotHideAUser(world):
    """
    Another user who knows the id of presenced's ping to Alice's client
    cannot answer it with an error that shows Alice offline: the server
    stamps the forger's own address on the answer, and presenced takes it
    only from Alice's client.
    """
    alice, mallory = world.user("alice"), world.user("mallory")
    await world.start(xmpp="resource_check = 1")
    sent: list[bytes] = []
    world.service.connection.xmlstream.rawDataOutFn = sent.append
    aliceClient = await world.login(alice, "desk")
    aliceClient.available(status="Here")
    malloryClient = await world.login(mallory)
    await world.waitForText(f"jid={alice}", "Here")

    def pingToAlice() -> str | None:
        for data in sent:
            text = data.decode()
            if f"to='{alice}/desk'" in text and "urn:xmpp:ping" in text:
                return text.split("id='")[1].split("'")[0]
        return None

    await until(lambda: pingToAlice() is not None)
    malloryClient.manager.send(f"<iq type='error' id='{pingToAlice()}' to='{world.server.component}'>{GONE}</iq>")
    malloryClient.available(status="Forged it")
    await world.waitForText(f"jid={mallory}", "Forged it")
    assert await world.text(f"jid={alice}") == "Here"
