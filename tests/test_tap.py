"""
Tests for L{presenced.tap} and the twistd plugin.
"""

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet import task
from twisted.plugin import getPlugins
from twisted.python import usage

from presenced import tap
from presenced.service import PresenceService


def test_pluginIsFound():
    """
    twistd finds the presenced plugin, which builds its service with tap.
    """
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert makers["presenced"].module == "presenced.tap"


def test_configIsRequired():
    """
    --config is required.
    """
    with pytest.raises(usage.UsageError, match="--config PATH is required"):
        tap.Options().parseOptions([])


def test_shortOption():
    """
    -c is short for --config.
    """
    options = tap.Options()
    options.parseOptions(["-c", "/etc/presenced/presenced.ini"])
    assert options["config"] == "/etc/presenced/presenced.ini"


def test_badConfigRefusesToStart(tmp_path):
    """
    A configuration with errors stops start-up with every problem listed.
    """
    path = tmp_path / "bad.ini"
    path.write_text("[xmpp]\nport = none\n[http]\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit) as caught:
        tap.makeService(options, task.Clock())
    message = str(caught.value)
    assert message.startswith("presenced: refusing to start")
    assert f"{path} [xmpp] jid: is required" in message
    assert f"{path} [xmpp] port: not a port number: 'none'" in message


def test_makeService(tmp_path):
    """
    A valid configuration gives the service tree with named xmpp and http
    children.
    """
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        "[http]\nlisten = tcp:0:interface=127.0.0.1\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    service = tap.makeService(options, task.Clock())
    assert isinstance(service, PresenceService)
    assert {child.name for child in service} == {"xmpp", "http"}


def test_unopenableAccessLogRefusesToStart(tmp_path):
    """
    An access log file that cannot be opened stops start-up with the
    reason; it is opened when the service starts, as the account twistd
    runs it as.
    """
    (tmp_path / "access.log").mkdir()
    path = tmp_path / "ok.ini"
    path.write_text(
        "[xmpp]\njid = presence.example.com\nsecret = s\ndomain = example.com\n"
        f"[http]\nlisten = tcp:0:interface=127.0.0.1\naccess_log = {tmp_path / 'access.log'}\n"
    )
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    service = tap.makeService(options, task.Clock())
    with pytest.raises(IsADirectoryError, match="access.log"):
        service.startService()
