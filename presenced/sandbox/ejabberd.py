"""
Run a real ejabberd server, from the distribution's packages, on loopback.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from presenced.sandbox.prosody import freePort, waitForPort

_CONFIG = """\
hosts:
  - "{domain}"
loglevel: info
certfiles: []
listen:
  - port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
  - port: {component_port}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "{component}":
        password: "{secret}"
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    deny: all
  privileged:
    allow: all
s2s_access: none
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_vcard: {{}}
  mod_privilege:
    roster:
      get: privileged
    presence:
      roster: privileged
"""

_CTL_CONFIG = """\
ERLANG_NODE=presenced{node}@localhost
ERL_DIST_PORT={dist_port}
INET_DIST_INTERFACE=127.0.0.1
"""


class EjabberdMissing(RuntimeError):
    """
    ejabberd is not installed.
    """


@dataclass
class Ejabberd:
    """
    An ejabberd server with one virtual host and one privileged component.
    """

    domain: str = "example.test"
    component: str = "presence.example.test"
    secret: str = "sandbox-secret"
    c2sPort: int = field(default_factory=freePort)
    componentPort: int = field(default_factory=freePort)
    distPort: int = field(default_factory=freePort)
    directory: Path = field(init=False)
    process: subprocess.Popen | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if shutil.which("ejabberdctl") is None:
            raise EjabberdMissing("ejabberdctl is not installed (scripts/setup installs it)")
        self.directory = Path(tempfile.mkdtemp(prefix="presenced-ejabberd-"))
        for name in ("config", "logs", "spool"):
            (self.directory / name).mkdir()
        (self.directory / "config" / "ejabberd.yml").write_text(_CONFIG.format(
            domain=self.domain, c2s=self.c2sPort, component_port=self.componentPort,
            component=self.component, secret=self.secret,
        ))
        (self.directory / "config" / "ejabberdctl.cfg").write_text(
            _CTL_CONFIG.format(node=self.distPort, dist_port=self.distPort))
        if os.geteuid() == 0:
            account = pwd.getpwnam("ejabberd")
            for path in [self.directory, *self.directory.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)

    def _command(self, *argv: str) -> list[str]:
        command = ["ejabberdctl", "--config-dir", str(self.directory / "config"),
                   "--logs", str(self.directory / "logs"), "--spool", str(self.directory / "spool"), *argv]
        if os.geteuid() == 0:
            return ["runuser", "-u", "ejabberd", "--", *command]
        return command

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.directory)}

    def start(self, timeout: float = 60.0) -> None:
        """
        Start the server and wait until it accepts clients and components.
        """
        self.process = subprocess.Popen(
            self._command("foreground"), env=self._env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for port in (self.c2sPort, self.componentPort):
            waitForPort(port, timeout, self.process)

    def ctl(self, *argv: str) -> str:
        """
        Run an ejabberdctl command against the running server.
        """
        return subprocess.run(self._command(*argv), env=self._env(), check=True,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout

    def register(self, user: str, password: str) -> str:
        """
        Create an account; returns its bare JID.
        """
        self.ctl("register", user, self.domain, password)
        return f"{user}@{self.domain}"

    def stop(self, timeout: float = 30.0) -> None:
        """
        Stop the server, if it runs.
        """
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.ctl("stop")
            self.process.wait(timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """
        What the server has logged so far.
        """
        path = self.directory / "logs" / "ejabberd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        """
        Stop the server and remove its files.
        """
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
