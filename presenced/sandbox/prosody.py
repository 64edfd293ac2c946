"""
Run a real Prosody server, from the distribution's packages, on loopback.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from presenced.sandbox.certificates import selfSigned

_CONFIG = """\
-- A throwaway Prosody for presenced, on loopback only.
pidfile = "{data}/prosody.pid"
data_path = "{data}"
certificates = "{data}"
log = {{ {{ levels = {{ min = "{loglevel}" }}, to = "file", filename = "{data}/prosody.log" }} }}
plugin_paths = {{ "/usr/lib/prosody/modules" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
component_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component_port} }}
http_interfaces = {{ "127.0.0.1" }}
http_ports = {{ {http} }}
https_ports = {{ }}
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ {direct_tls} }}
legacy_ssl_ports = {{ }}
http_default_host = "{domain}"
authentication = "internal_plain"
c2s_require_encryption = {require_tls}
allow_unencrypted_plain_auth = {allow_plain}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "presence"; "privilege"; {tls_module} {extra_modules} }}
modules_disabled = {{ "s2s"; {disable_tls} }}

VirtualHost "{domain}"
    privileged_entities = {{
{privileges}
    }}
{components}"""

_PRIVILEGE = """\
        ["{component}"] = {{ roster = "get"; presence = "roster" }};"""

_COMPONENT = """
Component "{component}"
    component_secret = "{secret}"
    modules_enabled = {{ "privilege" }}
"""


#: The modules that make Prosody serve HTTP.
_HTTP_MODULES = frozenset({"webpresence", "http_files", "bosh", "websocket"})


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    """
    Wait until something accepts connections on 127.0.0.1:C{port}.

    @raise RuntimeError: if C{process} ends first or C{timeout} passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before port {port} opened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class ProsodyMissing(RuntimeError):
    """
    Prosody is not installed.
    """


@dataclass
class Prosody:
    """
    A Prosody server with one virtual host and one privileged component,
    or more.

    @ivar domain: the users' domain.
    @ivar component: the presenced component's address.
    @ivar otherComponents: the addresses of further privileged components,
        with the same secret, e.g. for several presenced at once.
    @ivar modules: extra modules to enable, e.g. C{"webpresence"}.
    @ivar tls: offer STARTTLS (required) and direct TLS on C{directTLSPort},
        with a self-signed certificate for the domain.
    """

    domain: str = "example.test"
    component: str = "presence.example.test"
    otherComponents: tuple[str, ...] = ()
    secret: str = "sandbox-secret"
    modules: tuple[str, ...] = ()
    loglevel: str = "info"
    tls: bool = False
    directTLSPort: int = field(default_factory=freePort)
    c2sPort: int = field(default_factory=freePort)
    componentPort: int = field(default_factory=freePort)
    httpPort: int = field(default_factory=freePort)
    directory: Path = field(init=False)
    process: subprocess.Popen | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for tool in ("prosody", "prosodyctl"):
            if shutil.which(tool) is None:
                raise ProsodyMissing(f"{tool} is not installed (scripts/setup installs it)")
        self.directory = Path(tempfile.mkdtemp(prefix="presenced-prosody-"))
        self.configFile = self.directory / "prosody.cfg.lua"
        self.configFile.write_text(_CONFIG.format(
            data=self.directory,
            loglevel=self.loglevel,
            c2s=self.c2sPort,
            component_port=self.componentPort,
            http=self.httpPort,
            domain=self.domain,
            privileges="\n".join(_PRIVILEGE.format(component=c) for c in self.components),
            components="".join(_COMPONENT.format(component=c, secret=self.secret) for c in self.components),
            extra_modules="; ".join(f'"{m}"' for m in self.modules),
            require_tls="true" if self.tls else "false",
            allow_plain="false" if self.tls else "true",
            disable_tls="" if self.tls else '"tls"',
            tls_module='"tls";' if self.tls else "",
            direct_tls=self.directTLSPort if self.tls else "",
        ))
        files = [self.directory, self.configFile]
        if self.tls:
            files += self._writeCertificate()
        if os.geteuid() == 0:
            account = pwd.getpwnam("prosody")
            for path in files:
                os.chown(path, account.pw_uid, account.pw_gid)

    @property
    def components(self) -> tuple[str, ...]:
        """
        Every privileged component's address, L{component} first.
        """
        return (self.component, *self.otherComponents)

    @property
    def certificate(self) -> Path:
        """
        The server's self-signed certificate (with C{tls}), to trust as CA.
        """
        return self.directory / f"{self.domain}.crt"

    def _writeCertificate(self) -> list[Path]:
        return list(selfSigned(self.domain, self.directory))

    def _command(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "prosody", "--", *argv]
        return list(argv)

    def start(self, timeout: float = 30.0) -> None:
        """
        Start the server and wait until it accepts clients and components.
        """
        self.process = subprocess.Popen(
            self._command("prosody", "-F", "--config", str(self.configFile)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ports = [self.c2sPort, self.componentPort]
        if _HTTP_MODULES.intersection(self.modules):
            ports.append(self.httpPort)
        for port in ports:
            waitForPort(port, timeout, self.process)

    def stop(self, timeout: float = 15.0) -> None:
        """
        Stop the server, if it runs.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self, timeout: float = 15.0) -> None:
        """
        End the server at once with SIGKILL, as a crash would: no stream
        is closed, no data is saved.  L{start} starts it again.
        """
        if self.process is None or self.process.poll() is not None:
            return
        # As root the process is runuser's; the pid file names Prosody's own.
        pidFile = self.directory / "prosody.pid"
        pid = int(pidFile.read_text()) if pidFile.exists() else self.process.pid
        os.kill(pid, signal.SIGKILL)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        pidFile.unlink(missing_ok=True)

    def register(self, user: str, password: str) -> str:
        """
        Create an account; returns its bare JID.
        """
        subprocess.run(
            self._command("prosodyctl", "--config", str(self.configFile),
                          "register", user, self.domain, password),
            check=True, stdin=subprocess.DEVNULL, capture_output=True,
        )
        return f"{user}@{self.domain}"

    def log(self) -> str:
        """
        What the server has logged so far.
        """
        path = self.directory / "prosody.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        """
        Stop the server and remove its files.
        """
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
