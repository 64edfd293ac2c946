"""
The embed example in a real headless Chromium (Debian's, driven by
Selenium through its chromedriver), against the real twistd and a real
Prosody whose users change their presence while the page is open.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.web import resource, server

from presenced.answers import loadImages
from presenced.config import defaultImageDirectory
from presenced.presence import State
from presenced.sandbox.prosody import freePort

from test_daemon import Daemon
from test_twistd import ROOT

SCREENSHOTS = ROOT / "test-screenshots"
PICTURE = loadImages(defaultImageDirectory())[State.CHAT].data
HOSTILE = "<img src=x onerror=\"window.pwned=1;alert(1)\">"


class Page(resource.Resource):
    """
    The embed example, pointed at this presenced and these users, served
    from an origin of its own.
    """

    isLeaf = True

    def __init__(self, html: bytes) -> None:
        super().__init__()
        self.html = html

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self.html


def examplePage(presenced: str, users: dict[str, str]) -> bytes:
    html = (ROOT / "etc" / "embed-example.html").read_text()
    html = html.replace("https://presence.example.com", presenced)
    for name, jid in users.items():
        html = html.replace(f"{name}@example.com", jid)
    return html.encode("utf-8")


class Browser:
    """
    Headless Chromium; every call blocks, so tests run them in a thread.
    """

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1000,900"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)

    def script(self, code: str, *args):
        return self.driver.execute_script(code, *args)

    def waitFor(self, code: str, timeout: float) -> float:
        """
        Poll the JavaScript expression C{code} until it is true; the
        seconds it took.
        """
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.script(f"return Boolean({code});"):
                return time.monotonic() - began
            time.sleep(0.05)
        raise AssertionError(f"{code} still false after {timeout}s")

    def errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser():
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        raise RuntimeError("chromium and chromium-driver are not installed (scripts/setup installs them)")
    opened = Browser()
    yield opened
    opened.quit()


def publishAvatar(client, data: bytes) -> None:
    client.manager.send(
        "<iq type='set' id='vcard-set'><vCard xmlns='vcard-temp'>"
        f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{base64.b64encode(data).decode()}</BINVAL></PHOTO></vCard></iq>")


@pytest_twisted.ensureDeferred
async def test_embedExampleInChromium(world, browser, tmp_path):
    """
    The example page loads without console errors; its icons are 16 px
    wide, its badges and avatars render; the widget shows alice's status
    and follows her change within 2 s without a reload; a hostile status
    is shown as text and runs nothing.
    """
    users = {name: world.user(name) for name in ("alice", "bob", "mallory")}
    daemon = Daemon(world, tmp_path)
    daemon.write(public=True)
    await daemon.start()
    try:
        alice = await world.login(users["alice"])
        publishAvatar(alice, PICTURE)
        alice.manager.send("<presence><show>chat</show><status>Writing the release notes</status>"
                           "<x xmlns='vcard-temp:x:update'>"
                           f"<photo>{hashlib.sha1(PICTURE).hexdigest()}</photo></x></presence>")
        (await world.login(users["bob"])).available(show="away", status="At lunch")
        (await world.login(users["mallory"])).available(status=HOSTILE)
        await world.waitForText(f"jid={users['mallory']}", HOSTILE)
        await world.waitForText(f"jid={users['alice']}", "Writing the release notes")

        pagePort = freePort()
        page = reactor.listenTCP(pagePort, server.Site(
            Page(examplePage(f"http://127.0.0.1:{world.port}", users))), interface="127.0.0.1")
        try:
            await threads.deferToThread(browser.driver.get, f"http://127.0.0.1:{pagePort}/")
            await threads.deferToThread(
                browser.waitFor, "document.getElementById('alice-status').textContent"
                                 " === 'Writing the release notes'", 10)
            await threads.deferToThread(
                browser.waitFor, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)", 10)
            widths = await threads.deferToThread(browser.script, """
                const width = s => Array.from(document.querySelectorAll(s)).map(i => i.naturalWidth);
                return {icons: width('img.icon').concat(width('[data-presence-show=icon] img')),
                        badges: width('img.badge').concat(width('[data-presence-show=badge] img')),
                        avatars: width('img.avatar')};""")
            assert widths["icons"] and set(widths["icons"]) == {16}
            assert len(widths["badges"]) == 5 and min(widths["badges"]) > 40
            assert widths["avatars"] == [16, 96]  # alice's picture (an icon), bob's default avatar
            states = await threads.deferToThread(browser.script, """
                return ['alice', 'bob', 'mallory'].map(
                    n => document.getElementById(n + '-label').getAttribute('data-presence-state'));""")
            assert states == ["chat", "away", "available"]

            alice.available(show="dnd", status="In a meeting")
            took = await threads.deferToThread(
                browser.waitFor, "document.getElementById('alice-status').textContent === 'In a meeting'", 2)
            assert took < 2
            assert await threads.deferToThread(
                browser.script, "return document.getElementById('alice-label').className") == "presence-dnd"

            hostile = await threads.deferToThread(browser.script, """
                const status = document.getElementById('mallory-status');
                return {text: status.textContent, children: status.children.length,
                        pwned: window.pwned === 1};""")
            assert hostile == {"text": HOSTILE, "children": 0, "pwned": False}
            assert await threads.deferToThread(browser.errors) == []

            SCREENSHOTS.mkdir(exist_ok=True)
            await threads.deferToThread(browser.driver.save_screenshot, str(SCREENSHOTS / "embed-example.png"))
        finally:
            await page.stopListening()
    finally:
        daemon.stop()
