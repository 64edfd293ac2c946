"""
presenced as administrators run it: the real twistd command, and the
package as pip installs it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest_twisted

from presenced.answers import loadImages
from presenced.config import defaultImageDirectory
from presenced.presence import State

from conftest import until

IMAGES = loadImages(defaultImageDirectory())

ROOT = Path(__file__).resolve().parents[2]
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def twistd(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*TWISTD, *args], stdin=subprocess.DEVNULL, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_helpDocumentsOptions():
    """
    twistd presenced --help documents the config option.
    """
    output = subprocess.run([*TWISTD, "presenced", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert output.returncode == 0
    assert "--config=" in output.stdout and "-c" in output.stdout


def test_badConfigExitsWithErrors(tmp_path):
    """
    The daemon refuses to start with a bad file, listing every problem.
    """
    path = tmp_path / "bad.ini"
    path.write_text("[xmpp]\njid = presence.example.com\nsecret = x\n[http]\nlisten = tcp:nonsense\n[colours]\n")
    process = twistd("--nodaemon", "--pidfile=", "presenced", "--config", str(path))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"{path} [xmpp] domain: is required" in output
    assert f"{path} [http] listen: not a usable server endpoint" in output
    assert f"{path} [colours]: unknown section" in output


@pytest_twisted.ensureDeferred
async def test_daemonServesLivePresence(world, tmp_path):
    """
    twistd -n presenced -c FILE connects to Prosody and answers HTTP with
    a real user's live status.
    """
    user = world.user("daemon")
    client = await world.login(user)
    client.available(show="away", status="Served by twistd")
    settings = tmp_path / "presenced.ini"
    settings.write_text(world.settings(public=True))
    log = tmp_path / "presenced.log"
    process = twistd("--nodaemon", "--pidfile=", f"--logfile={log}", "presenced", "-c", str(settings))
    try:
        await until(lambda: log.exists() and "Connected to the XMPP server" in log.read_text(), timeout=30)
        await world.waitForText(f"jid={user}", "Served by twistd")
        assert (await world.get(f"jid={user}")).body == IMAGES[State.AWAY].data
    finally:
        process.terminate()
        process.communicate(timeout=30)
    # twistd shuts down cleanly, then ends itself with the signal it got.
    assert process.returncode == -signal.SIGTERM
    assert "Server Shut Down." in log.read_text()


def test_pipInstallsPluginPackageAndImages(tmp_path):
    """
    pip install puts the plugin, the package and the icons where twistd and
    presenced find them.
    """
    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    assert (target / "twisted" / "plugins" / "presenced_plugin.py").is_file()
    assert not (target / "twisted" / "plugins" / "__init__.py").exists()
    for name in ("available", "chat", "away", "xa", "dnd", "offline", "forbidden"):
        assert (target / "presenced" / "images" / f"{name}.png").is_file()
    check = subprocess.run(
        [sys.executable, "-c",
         "import presenced.config, sys; print(presenced.config.defaultImageDirectory())"],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    )
    assert check.stdout.strip() == str(target / "presenced" / "images")
