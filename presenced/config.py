"""
Settings: the INI file, validated whole into one immutable L{Settings}.

Every problem in a file is collected and reported at once, each naming the
file, section and key.  Unknown sections and keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from types import MappingProxyType
from typing import Callable, ClassVar, Literal, Mapping, Union

import hyperlink
from cryptography import x509
from twisted.internet.endpoints import serverFromString

import presenced
from presenced import jids
from presenced.presence import State
from presenced.sign import UnusableKey, readKey


def defaultImageDirectory() -> Path:
    """
    The status icons shipped with presenced.

    They are installed inside the package; in a source checkout they are
    the top-level C{images} directory.
    """
    package = Path(presenced.__file__).parent
    installed = package / "images"
    return installed if installed.is_dir() else package.parent / "images"


DEFAULT_LABELS = {
    State.AVAILABLE: "Available",
    State.CHAT: "Free to chat",
    State.AWAY: "Away",
    State.XA: "Extended away",
    State.DND: "Do not disturb",
    State.OFFLINE: "Unavailable",
    State.FORBIDDEN: "Forbidden",
}

_LABEL_KEYS = {
    State.AVAILABLE: "available_status",
    State.CHAT: "chat_status",
    State.AWAY: "away_status",
    State.XA: "xa_status",
    State.DND: "dnd_status",
    State.OFFLINE: "unavailable_status",
    State.FORBIDDEN: "forbidden_status",
}


@dataclass(frozen=True)
class ComponentSettings:
    """
    How to reach the XMPP server as a privileged component (XEP-0114,
    XEP-0356).

    @ivar jid: the component's address.
    @ivar secret: the component secret; left out of the C{repr}, so that
        it is not logged by accident.
    @ivar host: where the server accepts components.
    @ivar port: its port.
    @ivar domain: the users' domain, whose presence is served.
    @ivar resource_check: seconds between pings of every online resource,
        to notice clients that left without a word (0: never).
    """

    mode: ClassVar[Literal["component"]] = "component"

    jid: str
    secret: str = field(repr=False)
    host: str
    port: int
    domain: str
    resource_check: float = 300.0

    @property
    def servedDomains(self) -> frozenset[str]:
        """
        The domains whose users' presence is served: the users' domain.
        """
        return frozenset({self.domain})


@dataclass(frozen=True)
class ClientSettings:
    """
    How to reach the XMPP server as an ordinary account that users add as
    a contact.

    @ivar jid: the account's JID.
    @ivar secret: the account's password; left out of the C{repr}.
    @ivar host: where to connect; C{None} to look up the account domain's
        C{_xmpp-client._tcp} SRV records.
    @ivar port: the port, when C{host} is given.
    @ivar allow_domains: the domains whose users may add the account and
        be served.
    @ivar tls: C{"required"} (STARTTLS), C{"direct"} (TLS from the first
        byte, XEP-0368), C{"optional"} or C{"off"}.
    @ivar ca_file: a PEM bundle of CA certificates, every one of them
        trusted to verify the server with, instead of the system's.
    @ivar max_contacts: the most roster entries with a subscription;
        beyond, new users' subscription requests are refused.
    """

    mode: ClassVar[Literal["client"]] = "client"

    jid: str
    secret: str = field(repr=False)
    host: str | None
    port: int
    allow_domains: tuple[str, ...]
    tls: Literal["required", "direct", "optional", "off"] = "required"
    ca_file: Path | None = None
    max_contacts: int = 10_000

    @property
    def servedDomains(self) -> frozenset[str]:
        """
        The domains whose users' presence is served: the allowed ones.
        """
        return frozenset(self.allow_domains)


XMPPSettings = Union[ComponentSettings, ClientSettings]
"""
How to reach the XMPP server, in one of the two modes; C{mode} says which.
"""


LOOPBACK = (ip_network("127.0.0.0/8"), ip_network("::1"))


@dataclass(frozen=True)
class HTTPSettings:
    """
    Where and how the HTTP API is served.

    @ivar listen: Twisted server endpoint descriptions.
    @ivar images: the directory holding one C{STATE.png} per L{State}.
    @ivar access_log: C{"off"}, C{"stdout"}, or the path of a file that
        access log lines (combined log format) are appended to.
    @ivar trusted_proxies: the reverse proxies whose C{X-Forwarded-For}
        names the client in the access log.
    @ivar redirect_hosts: the hosts that image URLs may point to, IDNA
        host names or C{*.suffix} patterns; empty: any host.
    @ivar health_details_from: the networks whose clients see the details
        of the health answer; others get the status alone.
    @ivar metrics_from: the networks whose clients may read the metrics;
        others are answered as for a path that names nothing.
    @ivar cors_origins: the origins whose pages may read the answers:
        C{("*",)} any, C{()} none, or origins as C{scheme://host[:port]}.
    @ivar max_age: seconds a cache may keep an answer without revalidating.
    @ivar stream_keepalive: seconds between keep-alive comments on event
        streams.
    @ivar max_streams: the most event streams open at once.
    @ivar max_streams_per_client: the most event streams open at once
        from one client address.
    @ivar request_timeout: seconds a connection may stay idle, or take
        to send a request whole, before it is closed.
    @ivar max_connections: the most HTTP connections open at once.
    @ivar max_connections_per_client: the most open at once from one
        client address (trusted proxies apart).
    """

    listen: tuple[str, ...]
    images: Path
    access_log: str
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    redirect_hosts: tuple[str, ...] = ()
    health_details_from: tuple[IPv4Network | IPv6Network, ...] = LOOPBACK
    metrics_from: tuple[IPv4Network | IPv6Network, ...] = LOOPBACK
    cors_origins: tuple[str, ...] = ("*",)
    max_age: int = 0
    stream_keepalive: float = 15.0
    max_streams: int = 10_000
    max_streams_per_client: int = 32
    request_timeout: float = 15.0
    max_connections: int = 20_000
    max_connections_per_client: int = 256


@dataclass(frozen=True)
class PresenceSettings:
    """
    Who may see presence, and the texts shown.

    @ivar public: whether anyone may ask, or only the user and their
        presence subscribers.
    @ivar labels: the text answer for each L{State} when the user has no
        status text of their own.
    @ivar roster_ttl: seconds a fetched roster is trusted.
    @ivar roster_timeout: seconds to wait for a roster before refusing.
    @ivar requester_keys: the keys requester signatures are checked
        with (the contents of C{requester_key}), none when unset.
    @ivar require_signature: whether a C{req_jid} must be signed.
    @ivar store: the SQLite file that keeps when users were last seen and
        their offline status across restarts; C{None}: none.
    @ivar last_seen: whether answers say when an offline user was last
        seen.
    @ivar avatars: whether users' avatars are read and served
        (C{type=avatar}); otherwise everyone gets the default picture.
    @ivar roster_reads_in_flight: the most roster reads under way at once.
    @ivar roster_reads_per_client: the most roster reads one client
        address may cause per minute.
    @ivar max_resources: the most resources kept per user.
    """

    public: bool
    labels: Mapping[State, str]
    roster_ttl: float
    roster_timeout: float
    requester_keys: tuple[bytes, ...] = field(default=(), repr=False)
    require_signature: bool = False
    store: Path | None = None
    last_seen: bool = True
    avatars: bool = True
    roster_reads_in_flight: int = 64
    roster_reads_per_client: int = 120
    max_resources: int = 32


@dataclass(frozen=True)
class Settings:
    """
    Everything read from one configuration file.
    """

    xmpp: XMPPSettings
    http: HTTPSettings
    presence: PresenceSettings


class ConfigError(Exception):
    """
    A configuration file is wrong.

    @ivar problems: one line per problem, each naming file, section and key.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ReloadRefused(Exception):
    """
    Valid settings cannot be applied while presenced runs, and nothing was
    changed; the message says why.
    """


_MISSING = object()


class _Reader:
    """
    Reads typed values from a parsed file, collecting problems.
    """

    def __init__(self, parser: configparser.ConfigParser, name: str) -> None:
        self.parser = parser
        self.name = name
        self.problems: list[str] = []
        self.known: dict[str, set[str]] = {}

    def problem(self, section: str, key: str, text: str) -> None:
        self.problems.append(f"{self.name} [{section}] {key}: {text}")

    def value(self, section: str, key: str, convert: Callable[[str], object], default: object = _MISSING):
        """
        The converted value of a key, or C{default} when it is absent.

        A problem is noted when a required key (no default) is absent or a
        value does not convert; the result is then C{None} or the default.
        """
        self.known.setdefault(section, set()).add(key)
        fallback = None if default is _MISSING else default
        raw = self.parser.get(section, key, fallback=None)
        if raw is None:
            if default is _MISSING:
                self.problem(section, key, "is required")
            return fallback
        try:
            return convert(raw.strip())
        except ValueError as e:
            self.problem(section, key, str(e))
            return fallback

    def rejectUnknown(self) -> None:
        for section in self.parser.sections():
            if section not in self.known:
                self.problems.append(f"{self.name} [{section}]: unknown section")
                continue
            for key in self.parser.options(section):
                if key not in self.known[section]:
                    self.problem(section, key, "unknown key")


def _text(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _parsedJID(raw: str) -> jids.JIDParts:
    try:
        return jids.parse(raw)
    except jids.InvalidJID as e:
        raise ValueError(f"not a valid JID: {raw!r} ({e})") from None


def _domainJID(raw: str) -> str:
    parsed = _parsedJID(raw)
    if parsed.local is not None or parsed.resource is not None:
        raise ValueError(f"must be a bare domain, without user or resource: {raw!r}")
    return parsed.domain


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"not a port number: {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"not a port number (1-65535): {raw!r}")
    return port


def _boolean(raw: str) -> bool:
    states = configparser.ConfigParser.BOOLEAN_STATES
    if raw.lower() not in states:
        raise ValueError(f"not a boolean (true/false, yes/no, on/off, 1/0): {raw!r}")
    return states[raw.lower()]


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"not a number of seconds: {raw!r}") from None
    if not 0 <= value <= 86400:
        raise ValueError(f"must be between 0 and 86400 seconds: {raw!r}")
    return value


def _positiveSeconds(raw: str) -> float:
    value = _seconds(raw)
    if value == 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _positiveCount(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1: {raw!r}")
    return value


def _endpoints(raw: str) -> tuple[str, ...]:
    from twisted.internet import reactor

    descriptions = tuple(raw.split())
    if not descriptions:
        raise ValueError("needs at least one endpoint description")
    for description in descriptions:
        try:
            serverFromString(reactor, description)
        except Exception as e:
            raise ValueError(f"not a usable server endpoint {description!r}: {e}") from None
    return descriptions


def _directory(raw: str) -> Path:
    path = Path(raw)
    if not path.is_dir():
        raise ValueError(f"not a directory: {raw!r}")
    missing = [state.value for state in State if not (path / f"{state.value}.png").is_file()]
    if missing:
        raise ValueError(f"{raw!r} lacks {', '.join(name + '.png' for name in missing)}")
    return path


def _accessLog(raw: str) -> str:
    if raw in ("off", "stdout"):
        return raw
    path = Path(raw)
    if not path.is_absolute():
        raise ValueError(f"must be off, stdout or an absolute file path: {raw!r}")
    if not path.parent.is_dir():
        raise ValueError(f"the directory of {raw!r} does not exist")
    return raw


def _networks(raw: str) -> tuple[IPv4Network | IPv6Network, ...]:
    networks = []
    for item in raw.split():
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _hostPatterns(raw: str) -> tuple[str, ...]:
    patterns = []
    for item in raw.split():
        wildcard, host = ("*.", item[2:]) if item.startswith("*.") else ("", item)
        try:
            ascii = hyperlink.parse(f"https://{host}/").to_uri().host.lower()
        except Exception:
            ascii = ""
        if any(c in host for c in "/?#@:[]\\") or not _HOST_NAME.fullmatch(ascii):
            raise ValueError(f"not a host name or *.suffix pattern: {item!r}")
        patterns.append(wildcard + ascii)
    return tuple(patterns)


def originOf(text: str) -> str:
    """
    The web origin C{text} names, written as browsers write C{Origin}:
    C{scheme://host[:port]}, scheme and host in lower case (an
    international host IDNA-encoded), the scheme's default port left out.

    @raise ValueError: C{text} is not an C{http} or C{https} origin with a
        host name (C{null} is none).
    """
    try:
        url = hyperlink.parse(text).to_uri()
        scheme, host, port = url.scheme.lower(), url.host.lower(), url.port
    except Exception:
        url, scheme, host, port = None, "", "", None
    if (url is None or scheme not in ("http", "https") or not _HOST_NAME.fullmatch(host)
            or not isinstance(port, int) or not 0 < port < 65536
            or url.path not in ((), ("",)) or url.query or url.fragment or url.userinfo
            or text.endswith("/") and len(url.path) == 1):
        raise ValueError(f"not an origin (scheme://host[:port]): {text!r}")
    return f"{scheme}://{host}" + ("" if port == {"http": 80, "https": 443}[scheme] else f":{port}")


def _origins(raw: str) -> tuple[str, ...]:
    items = raw.split()
    if items == ["*"]:
        return ("*",)
    if items == ["off"]:
        return ()
    origins = []
    for item in items:
        try:
            origins.append(originOf(item))
        except ValueError:
            raise ValueError(f"not *, off, or a list of origins (scheme://host[:port]): {item!r}") from None
    if not origins:
        raise ValueError("needs *, off, or at least one origin")
    return tuple(origins)


def _maxAge(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"not a whole number of seconds: {raw!r}") from None
    if not 0 <= value <= 31_536_000:
        raise ValueError(f"must be between 0 and 31536000 seconds: {raw!r}")
    return value


def _store(raw: str) -> Path | None:
    if raw in ("", "off"):
        return None
    path = Path(raw)
    if not path.is_absolute():
        raise ValueError(f"must be off or an absolute path: {raw!r}")
    return path


_CLIENT_ONLY = ("allow_domains", "tls", "ca_file", "max_contacts")


def _accountJID(raw: str) -> str:
    parsed = _parsedJID(raw)
    if parsed.local is None:
        raise ValueError(f"must be an account, user@domain: {raw!r}")
    return parsed.full


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}: {raw!r}")
        return raw
    return check


def _domains(raw: str) -> tuple[str, ...]:
    domains = tuple(_domainJID(item) for item in raw.split())
    if not domains:
        raise ValueError("needs at least one domain")
    return domains


def _file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"not a file: {raw!r}")
    return path


def caCertificates(path: Path) -> list[x509.Certificate]:
    """
    Every certificate of the PEM bundle at C{path}.

    @raise ValueError: if it holds none, or one that cannot be read.
    @raise OSError: if the file cannot be read.
    """
    return x509.load_pem_x509_certificates(path.read_bytes())


def _caFile(raw: str) -> Path:
    path = _file(raw)
    try:
        caCertificates(path)
    except (OSError, ValueError):
        raise ValueError(f"not a readable PEM file of certificates: {raw!r}") from None
    return path


def _keys(raw: str) -> tuple[bytes, ...]:
    paths = raw.split()
    if not 1 <= len(paths) <= 2:
        raise ValueError("needs one key file, or two while keys are rotated")
    try:
        return tuple(readKey(path) for path in paths)
    except UnusableKey as e:
        raise ValueError(str(e)) from None


def _signatureSettings(read: _Reader) -> tuple[tuple[bytes, ...], bool]:
    keys = read.value("presence", "requester_key", _keys, ())
    required = read.value("presence", "require_signature", _boolean, bool(keys))
    if required and not read.parser.has_option("presence", "requester_key"):
        read.problem("presence", "require_signature", "needs requester_key, the key requesters are signed with")
    return keys, required


def _isLoopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ip_address(host).is_loopback
    except ValueError:
        return False


def _checkPlaintext(read: _Reader, key: str, link: str, host: str | None, allowPlaintext: bool) -> None:
    """
    Note a problem at C{key} when C{link}, a link that can be unencrypted,
    goes to a host that is not loopback without C{allow_plaintext}.
    """
    if not allowPlaintext and not _isLoopback(host):
        read.problem("xmpp", key, f"{link}; it needs a loopback host (127.0.0.1, ::1, localhost) "
                                  "or allow_plaintext = true")


def _xmppSettings(read: _Reader) -> XMPPSettings:
    mode = read.value("xmpp", "mode", _choice("component", "client"), "component")
    allowPlaintext = read.value("xmpp", "allow_plaintext", _boolean, False)
    if mode != "client":
        for key in _CLIENT_ONLY:
            if read.value("xmpp", key, str, None) is not None:
                read.problem("xmpp", key, "only used with mode = client")
        host = read.value("xmpp", "host", _text, "127.0.0.1")
        _checkPlaintext(read, "host", "the component link (XEP-0114) is not encrypted", host, allowPlaintext)
        return ComponentSettings(
            jid=read.value("xmpp", "jid", _domainJID),
            secret=read.value("xmpp", "secret", _text),
            host=host,
            port=read.value("xmpp", "port", _port, 5347),
            domain=read.value("xmpp", "domain", _domainJID),
            resource_check=read.value("xmpp", "resource_check", _seconds, 300.0),
        )
    if read.value("xmpp", "resource_check", str, None) is not None:
        read.problem("xmpp", "resource_check", "only used with mode = component")
    jid = read.value("xmpp", "jid", _accountJID)
    accountDomain = jids.split(jid).domain if jid else None
    if read.value("xmpp", "domain", str, None) is not None:
        read.problem("xmpp", "domain", "not used with mode = client; list the served domains in allow_domains")
    host = read.value("xmpp", "host", _text, None)
    tls = read.value("xmpp", "tls", _choice("required", "direct", "optional", "off"), "required")
    if tls in ("optional", "off"):
        _checkPlaintext(read, "tls", f"{tls} can leave the link unencrypted", host, allowPlaintext)
    return ClientSettings(
        jid=jid,
        secret=read.value("xmpp", "secret", _text),
        host=host,
        port=read.value("xmpp", "port", _port, 5223 if tls == "direct" else 5222),
        allow_domains=read.value("xmpp", "allow_domains", _domains, (accountDomain,) if accountDomain else ()),
        tls=tls,
        ca_file=read.value("xmpp", "ca_file", _caFile, None),
        max_contacts=read.value("xmpp", "max_contacts", _positiveCount, 10_000),
    )


def fromString(text: str, name: str = "<string>") -> Settings:
    """
    Parse and validate settings from the text of an INI file.

    @param name: how to name the file in problem reports.
    @raise ConfigError: listing every problem found.
    """
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"),
        interpolation=None,
        empty_lines_in_values=False,
    )
    try:
        parser.read_string(text, source=name)
    except configparser.Error as e:
        raise ConfigError([f"{name}: {e}"]) from None

    read = _Reader(parser, name)
    for section in ("xmpp", "http"):
        if not parser.has_section(section):
            read.problems.append(f"{name} [{section}]: missing section")

    xmpp = _xmppSettings(read)
    http = HTTPSettings(
        listen=read.value("http", "listen", _endpoints, ("tcp:8080:interface=127.0.0.1",)),
        images=read.value("http", "images", _directory, defaultImageDirectory()),
        access_log=read.value("http", "access_log", _accessLog, "off"),
        trusted_proxies=read.value("http", "trusted_proxies", _networks, ()),
        redirect_hosts=read.value("http", "redirect_hosts", _hostPatterns, ()),
        health_details_from=read.value("http", "health_details_from", _networks, LOOPBACK),
        metrics_from=read.value("http", "metrics_from", _networks, LOOPBACK),
        cors_origins=read.value("http", "cors_origins", _origins, ("*",)),
        max_age=read.value("http", "max_age", _maxAge, 0),
        stream_keepalive=read.value("http", "stream_keepalive", _positiveSeconds, 15.0),
        max_streams=read.value("http", "max_streams", _positiveCount, 10_000),
        max_streams_per_client=read.value("http", "max_streams_per_client", _positiveCount, 32),
        request_timeout=read.value("http", "request_timeout", _positiveSeconds, 15.0),
        max_connections=read.value("http", "max_connections", _positiveCount, 20_000),
        max_connections_per_client=read.value("http", "max_connections_per_client", _positiveCount, 256),
    )
    labels = {
        state: read.value("presence", key, str, DEFAULT_LABELS[state])
        for state, key in _LABEL_KEYS.items()
    }
    keys, required = _signatureSettings(read)
    presence = PresenceSettings(
        public=read.value("presence", "public", _boolean, False),
        labels=MappingProxyType(labels),
        roster_ttl=read.value("presence", "roster_ttl", _seconds, 60.0),
        roster_timeout=read.value("presence", "roster_timeout", _positiveSeconds, 5.0),
        requester_keys=keys,
        require_signature=required,
        store=read.value("presence", "store", _store, None),
        last_seen=read.value("presence", "last_seen", _boolean, True),
        avatars=read.value("presence", "avatars", _boolean, True),
        roster_reads_in_flight=read.value("presence", "roster_reads_in_flight", _positiveCount, 64),
        roster_reads_per_client=read.value("presence", "roster_reads_per_client", _positiveCount, 120),
        max_resources=read.value("presence", "max_resources", _positiveCount, 32),
    )
    read.rejectUnknown()
    if xmpp.mode == "component" and xmpp.jid and xmpp.jid == xmpp.domain:
        read.problem("xmpp", "jid", "the component needs its own address, not the users' domain")
    if xmpp.mode == "client" and not presence.public:
        read.problem("presence", "public",
                     "must be true with mode = client: an account cannot read other users' rosters; "
                     "only users who added the account are served anyway")
    if read.problems:
        raise ConfigError(read.problems)
    return Settings(xmpp=xmpp, http=http, presence=presence)


def load(path: str) -> Settings:
    """
    Read and validate the settings in the file at C{path}.

    @raise ConfigError: listing every problem found, or why the file
        cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read: {e}"]) from None
    return fromString(text, path)
