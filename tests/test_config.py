"""
Tests for L{presenced.config}: INI files into validated settings.
"""

from pathlib import Path

import pytest

from presenced import config
from presenced.presence import State

MINIMAL = """
[xmpp]
jid = presence.example.com
secret = s3cret
domain = example.com

[http]
listen = tcp:0:interface=127.0.0.1
"""

SAMPLE = Path(__file__).parent.parent / "etc" / "presenced.ini"


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.fromString(text, "test.ini")
    return caught.value.problems


def test_minimalFileGetsDefaults():
    """
    A file with only the required keys gets the documented defaults.
    """
    settings = config.fromString(MINIMAL)
    assert settings.xmpp == config.ComponentSettings(
        "presence.example.com", "s3cret", "127.0.0.1", 5347, "example.com"
    )
    assert settings.presence.public is False
    assert settings.presence.labels[State.OFFLINE] == "Unavailable"
    assert settings.presence.labels[State.FORBIDDEN] == "Forbidden"
    assert settings.presence.roster_ttl == 60
    assert settings.http.images == config.defaultImageDirectory()


def test_sampleFileIsValid():
    """
    The commented sample in etc/ is a valid file.
    """
    settings = config.load(str(SAMPLE))
    assert settings.xmpp.domain == "example.com"
    assert settings.http.listen == ("tcp:8080:interface=127.0.0.1",)


def test_inlineCommentsAndValues():
    """
    Values may be followed by ; comments; labels and booleans are read.
    """
    settings = config.fromString(MINIMAL + """
[presence]
public = yes        ; anyone may ask
unavailable_status = Not here
away_status = Out for a bit
roster_ttl = 0
""")
    assert settings.presence.public is True
    assert settings.presence.labels[State.OFFLINE] == "Not here"
    assert settings.presence.labels[State.AWAY] == "Out for a bit"
    assert settings.presence.roster_ttl == 0


def test_severalListenEndpoints():
    """
    listen takes whitespace-separated endpoint descriptions.
    """
    text = MINIMAL.replace("listen = tcp:0:interface=127.0.0.1",
                           "listen = tcp:0:interface=127.0.0.1\n  tcp6:0:interface=\\:\\:1")
    assert config.fromString(text).http.listen == ("tcp:0:interface=127.0.0.1", "tcp6:0:interface=\\:\\:1")


def test_everyProblemReportedAtOnce():
    """
    All problems are reported together, each naming file, section and key.
    """
    found = problems("""
[xmpp]
jid = not a jid@@
port = 99999
domain = example.com
colour = blue

[http]
listen = nonsense:1

[presence]
public = maybe
roster_timeout = 0

[extra]
key = value
""")
    assert found == [
        "test.ini [xmpp] jid: not a valid JID: 'not a jid@@' (Invalid character in username)",
        "test.ini [xmpp] secret: is required",
        "test.ini [xmpp] port: not a port number (1-65535): '99999'",
        "test.ini [http] listen: not a usable server endpoint 'nonsense:1': Unknown endpoint type: 'nonsense'",
        "test.ini [presence] public: not a boolean (true/false, yes/no, on/off, 1/0): 'maybe'",
        "test.ini [presence] roster_timeout: must be more than 0 seconds",
        "test.ini [xmpp] colour: unknown key",
        "test.ini [extra]: unknown section",
    ]


def test_missingSections():
    """
    The xmpp and http sections are required.
    """
    found = problems("[presence]\npublic = true\n")
    assert "test.ini [xmpp]: missing section" in found
    assert "test.ini [http]: missing section" in found


def test_componentJIDMustBeADomain():
    """
    The component's address is a bare domain, and not the users' domain.
    """
    assert problems(MINIMAL.replace("jid = presence.example.com", "jid = bot@example.com")) == [
        "test.ini [xmpp] jid: must be a bare domain, without user or resource: 'bot@example.com'"
    ]
    assert problems(MINIMAL.replace("jid = presence.example.com", "jid = example.com")) == [
        "test.ini [xmpp] jid: the component needs its own address, not the users' domain"
    ]


def test_componentLinkToOtherHostNeedsAllowPlaintext():
    """
    The component link is not encrypted, so a host that is not loopback
    is refused unless allow_plaintext is set; loopback hosts are fine.
    """
    remote = MINIMAL.replace("domain = example.com", "domain = example.com\nhost = xmpp.example.com")
    assert problems(remote) == [
        "test.ini [xmpp] host: the component link (XEP-0114) is not encrypted; it needs a loopback host "
        "(127.0.0.1, ::1, localhost) or allow_plaintext = true"
    ]
    allowed = remote.replace("host = xmpp.example.com", "host = xmpp.example.com\nallow_plaintext = true")
    assert config.fromString(allowed).xmpp.host == "xmpp.example.com"
    for loopback in ("127.0.0.2", "::1", "localhost"):
        assert config.fromString(remote.replace("xmpp.example.com", loopback)).xmpp.host == loopback


def test_domainWithAnEmptyLabel():
    """
    A domain with an empty label is refused like any other bad JID.
    """
    assert problems(MINIMAL.replace("domain = example.com", "domain = example..com")) == [
        "test.ini [xmpp] domain: not a valid JID: 'example..com' (Empty label in hostname)"
    ]
    assert problems(CLIENT.replace("secret = password", "secret = password\nallow_domains = example.com a\u3002.b")) == [
        "test.ini [xmpp] allow_domains: not a valid JID: 'a\u3002.b' (Empty label in hostname)"
    ]


def test_emptySecret():
    """
    An empty secret is refused.
    """
    assert problems(MINIMAL.replace("secret = s3cret", "secret =")) == [
        "test.ini [xmpp] secret: must not be empty"
    ]


def test_imageDirectoryMustHoldEveryIcon(tmp_path):
    """
    A configured image directory must exist and hold one PNG per state.
    """
    (tmp_path / "available.png").write_bytes(b"png")
    found = problems(MINIMAL + f"images = {tmp_path}\n")
    assert len(found) == 1
    assert found[0].startswith(f"test.ini [http] images: '{tmp_path}' lacks chat.png")
    assert problems(MINIMAL + "images = /does/not/exist\n") == [
        "test.ini [http] images: not a directory: '/does/not/exist'"
    ]


def test_syntaxError():
    """
    A file that is not INI at all is reported as such.
    """
    found = problems("just text\n")
    assert len(found) == 1 and found[0].startswith("test.ini: ")


def test_unreadableFile(tmp_path):
    """
    A missing file is reported with its path.
    """
    path = tmp_path / "missing.ini"
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(path))
    assert caught.value.problems[0].startswith(f"{path}: cannot read:")


def test_shippedImagesAreComplete():
    """
    The default image directory holds a 16x16 PNG for every state.
    """
    directory = config.defaultImageDirectory()
    for state in State:
        data = (directory / f"{state.value}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (16, 16)


def test_trustedProxies():
    """
    trusted_proxies takes addresses and networks; anything else is an error.
    """
    from ipaddress import ip_network

    settings = config.fromString(MINIMAL + "trusted_proxies = 127.0.0.1 10.1.0.0/16 ::1\n")
    assert settings.http.trusted_proxies == (
        ip_network("127.0.0.1"), ip_network("10.1.0.0/16"), ip_network("::1"))
    assert problems(MINIMAL + "trusted_proxies = 127.0.0.1 proxy.example\n") == [
        "test.ini [http] trusted_proxies: not an IP address or network: 'proxy.example'"
    ]


def test_redirectHosts():
    """
    redirect_hosts takes host names and *.suffix patterns, kept IDNA-encoded
    and in lower case; anything else is an error.
    """
    settings = config.fromString(MINIMAL + "redirect_hosts = img.example.org *.CDN.example B\u00fccher.example\n")
    assert settings.http.redirect_hosts == ("img.example.org", "*.cdn.example", "xn--bcher-kva.example")
    assert config.fromString(MINIMAL).http.redirect_hosts == ()
    for item in ["https://img.example.org", "img.example.org/x", "*", "*.", "a..b", "user@host", "-a.example"]:
        assert problems(MINIMAL + f"redirect_hosts = example.org {item}\n") == [
            f"test.ini [http] redirect_hosts: not a host name or *.suffix pattern: {item!r}"
        ]


def test_healthDetailsFrom():
    """
    health_details_from takes addresses and networks, loopback by default;
    empty shows the details to nobody.
    """
    from ipaddress import ip_network

    assert config.fromString(MINIMAL).http.health_details_from == (ip_network("127.0.0.0/8"), ip_network("::1"))
    settings = config.fromString(MINIMAL + "health_details_from = 192.0.2.7 10.1.0.0/16\n")
    assert settings.http.health_details_from == (ip_network("192.0.2.7"), ip_network("10.1.0.0/16"))
    assert config.fromString(MINIMAL + "health_details_from =\n").http.health_details_from == ()
    assert problems(MINIMAL + "health_details_from = monitor.example\n") == [
        "test.ini [http] health_details_from: not an IP address or network: 'monitor.example'"
    ]


def test_metricsFrom():
    """
    metrics_from takes addresses and networks, loopback by default; empty
    lets nobody read the metrics.
    """
    from ipaddress import ip_network

    assert config.fromString(MINIMAL).http.metrics_from == (ip_network("127.0.0.0/8"), ip_network("::1"))
    settings = config.fromString(MINIMAL + "metrics_from = 192.0.2.9 fd00::/8\n")
    assert settings.http.metrics_from == (ip_network("192.0.2.9"), ip_network("fd00::/8"))
    assert config.fromString(MINIMAL + "metrics_from =\n").http.metrics_from == ()
    assert problems(MINIMAL + "metrics_from = prometheus.example 10.0.0.0/33\n") == [
        "test.ini [http] metrics_from: not an IP address or network: 'prometheus.example'"
    ]


CLIENT = """
[xmpp]
mode = client
jid = presence-bot@example.com/web
secret = password
[http]
listen = tcp:0:interface=127.0.0.1
[presence]
public = true
"""


def test_clientModeDefaults():
    """
    In client mode, the account's domain is the one allowed, TLS is
    required, and the server is found through DNS SRV on port 5222.
    """
    xmpp = config.fromString(CLIENT).xmpp
    assert (xmpp.mode, xmpp.jid, xmpp.allow_domains) == ("client", "presence-bot@example.com/web", ("example.com",))
    assert (xmpp.host, xmpp.port, xmpp.tls, xmpp.ca_file) == (None, 5222, "required", None)
    assert xmpp.max_contacts == 10_000
    assert xmpp.servedDomains == frozenset({"example.com"})


@pytest.mark.parametrize("text,secret", [(MINIMAL, "s3cret"), (CLIENT, "password")])
def test_secretNotInRepr(text, secret):
    """
    The component secret and the account password appear in no repr of
    the settings, so that logging them does not give them away.
    """
    settings = config.fromString(text)
    assert settings.xmpp.secret == secret
    assert secret not in repr(settings.xmpp)
    assert secret not in repr(settings)


def test_clientModeProblems(tmp_path):
    """
    Client mode needs an account JID and public answers; TLS may only be
    relaxed for a loopback server; component-only keys are refused.
    """
    text = (CLIENT.replace("presence-bot@example.com/web", "example.com")
            .replace("public = true", "public = false")
            .replace("secret = password", "secret = password\ntls = off\ndomain = example.com\nca_file = /nope"))
    assert problems(text) == [
        "test.ini [xmpp] jid: must be an account, user@domain: 'example.com'",
        "test.ini [xmpp] domain: not used with mode = client; list the served domains in allow_domains",
        "test.ini [xmpp] tls: off can leave the link unencrypted; it needs a loopback host "
        "(127.0.0.1, ::1, localhost) or allow_plaintext = true",
        "test.ini [xmpp] ca_file: not a file: '/nope'",
        "test.ini [presence] public: must be true with mode = client: an account cannot read other "
        "users' rosters; only users who added the account are served anyway",
    ]


def test_clientModeWithoutTLSNeedsAllowPlaintextForOtherHosts():
    """
    allow_plaintext lets client mode, too, skip TLS with a host that is
    not loopback.
    """
    text = CLIENT.replace("secret = password", "secret = password\nhost = xmpp.example.com\ntls = off")
    assert len(problems(text)) == 1
    xmpp = config.fromString(text.replace("tls = off", "tls = off\nallow_plaintext = yes")).xmpp
    assert (xmpp.host, xmpp.tls) == ("xmpp.example.com", "off")


def test_caFileMustHoldCertificates(tmp_path):
    """
    A ca_file that holds no PEM certificate is refused.
    """
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    assert problems(CLIENT.replace("secret = password", f"secret = password\nca_file = {bundle}")) == [
        f"test.ini [xmpp] ca_file: not a readable PEM file of certificates: '{bundle}'"
    ]


def test_maxContacts():
    """
    max_contacts is a whole number of at least 1, and only for client mode.
    """
    withMax = CLIENT.replace("secret = password", "secret = password\nmax_contacts = {}").format
    assert config.fromString(withMax("25")).xmpp.max_contacts == 25
    assert problems(withMax("0")) + problems(withMax("many")) == [
        "test.ini [xmpp] max_contacts: must be at least 1: '0'",
        "test.ini [xmpp] max_contacts: not a whole number: 'many'",
    ]
    assert problems(MINIMAL.replace("secret = s3cret", "secret = s3cret\nmax_contacts = 5")) == [
        "test.ini [xmpp] max_contacts: only used with mode = client"
    ]


def test_clientKeysRefusedInComponentMode():
    """
    Keys that only client mode uses are errors in component mode.
    """
    assert problems(MINIMAL.replace("secret = s3cret", "secret = s3cret\ntls = off")) == [
        "test.ini [xmpp] tls: only used with mode = client"
    ]


def keyFile(tmp_path, name="requester.key", content=b"0123456789abcdef0123456789abcdef\n", mode=0o640):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_requesterKeyRequiresSignaturesByDefault(tmp_path):
    """
    A requester_key is read (whitespace stripped) and, unless told
    otherwise, makes signatures required; without one, nothing is signed.
    """
    assert config.fromString(MINIMAL).presence.requester_keys == ()
    assert config.fromString(MINIMAL).presence.require_signature is False
    settings = config.fromString(MINIMAL + f"[presence]\nrequester_key = {keyFile(tmp_path)}\n")
    assert settings.presence.requester_keys == (b"0123456789abcdef0123456789abcdef",)
    assert settings.presence.require_signature is True
    optional = config.fromString(
        MINIMAL + f"[presence]\nrequester_key = {keyFile(tmp_path)}\nrequire_signature = false\n")
    assert optional.presence.require_signature is False


def test_twoRequesterKeysForRotation(tmp_path):
    """
    Two key files may be given while keys are rotated; three may not.
    """
    new, old = keyFile(tmp_path, "new.key"), keyFile(tmp_path, "old.key", b"fedcba9876543210fedcba9876543210")
    settings = config.fromString(MINIMAL + f"[presence]\nrequester_key = {new} {old}\n")
    assert settings.presence.requester_keys == (b"0123456789abcdef0123456789abcdef",
                                                b"fedcba9876543210fedcba9876543210")
    assert problems(MINIMAL + f"[presence]\nrequester_key = {new} {old} {new}\n") == [
        "test.ini [presence] requester_key: needs one key file, or two while keys are rotated"]


def test_unusableRequesterKeys(tmp_path):
    """
    A missing, world-readable or short key file is a problem naming it.
    """
    missing = tmp_path / "missing.key"
    public = keyFile(tmp_path, "public.key", mode=0o644)
    short = keyFile(tmp_path, "short.key", b"tooshort\n")
    for path, why in [(missing, "cannot read"), (public, "readable by everyone"), (short, "fewer than 16 bytes")]:
        [problem] = problems(MINIMAL + f"[presence]\nrequester_key = {path}\n")
        assert problem.startswith("test.ini [presence] requester_key: ") and why in problem, problem


def test_requiredSignaturesNeedAKey():
    """
    require_signature = true without a key could never admit anyone.
    """
    assert problems(MINIMAL + "[presence]\nrequire_signature = true\n") == [
        "test.ini [presence] require_signature: needs requester_key, the key requesters are signed with"]


def test_requesterKeysAreNotShownInTheSettings(tmp_path):
    """
    The key does not appear in the settings' repr, which may be logged.
    """
    settings = config.fromString(MINIMAL + f"[presence]\nrequester_key = {keyFile(tmp_path)}\n")
    assert "0123456789abcdef" not in repr(settings)


def test_eachModeHasItsOwnSettings():
    """
    Component and client settings are types of their own, each with the
    keys of its mode only, and their labels cannot be changed in place.
    """
    component, client = config.fromString(MINIMAL), config.fromString(CLIENT)
    assert isinstance(component.xmpp, config.ComponentSettings) and component.xmpp.mode == "component"
    assert isinstance(client.xmpp, config.ClientSettings) and client.xmpp.mode == "client"
    assert not hasattr(component.xmpp, "tls") and not hasattr(client.xmpp, "resource_check")
    with pytest.raises(TypeError):
        component.presence.labels[State.OFFLINE] = "changed"


def test_corsOrigins():
    """
    cors_origins is * by default, off for none, or a list of origins,
    kept as scheme://host[:port] with default ports left out.
    """
    assert config.fromString(MINIMAL).http.cors_origins == ("*",)
    assert config.fromString(MINIMAL + "cors_origins = off\n").http.cors_origins == ()
    settings = config.fromString(MINIMAL + "cors_origins = https://Www.Example.ORG http://localhost:8000 "
                                           "https://b\u00fccher.example:443\n")
    assert settings.http.cors_origins == (
        "https://www.example.org", "http://localhost:8000", "https://xn--bcher-kva.example")


@pytest.mark.parametrize("item", [
    "example.org", "ftp://example.org", "https://example.org/", "https://example.org/path", "https://u@example.org",
    "https://example.org?x", "* https://example.org", "off https://example.org", "https://", "https://exa mple",
])
def test_corsOriginsRejected(item):
    """
    Anything but *, off, or whitespace-separated origins is refused,
    naming the item.
    """
    [problem] = problems(MINIMAL + f"cors_origins = {item}\n")
    assert problem.startswith("test.ini [http] cors_origins: ")


def test_maxAge():
    """
    max_age is 0 by default, and a whole number of seconds up to a year.
    """
    assert config.fromString(MINIMAL).http.max_age == 0
    assert config.fromString(MINIMAL + "max_age = 30\n").http.max_age == 30
    for raw in ("-1", "1.5", "x", "31536001"):
        [problem] = problems(MINIMAL + f"max_age = {raw}\n")
        assert problem.startswith("test.ini [http] max_age: ")


def test_storeAndLastSeen():
    """
    store is off by default or an absolute path; last_seen is true by
    default.
    """
    settings = config.fromString(MINIMAL)
    assert (settings.presence.store, settings.presence.last_seen) == (None, True)
    settings = config.fromString(MINIMAL + "[presence]\nstore = /var/lib/presenced/presence.sqlite\nlast_seen = no\n")
    assert (settings.presence.store, settings.presence.last_seen) == (Path("/var/lib/presenced/presence.sqlite"), False)
    assert problems(MINIMAL + "[presence]\nstore = presence.sqlite\n") == [
        "test.ini [presence] store: must be off or an absolute path: 'presence.sqlite'"]


def test_streamSettings():
    """
    Event streams keep alive every 15 s, at most 10,000 in all and 32 per
    client by default; each is a positive number.
    """
    http = config.fromString(MINIMAL).http
    assert (http.stream_keepalive, http.max_streams, http.max_streams_per_client) == (15.0, 10_000, 32)
    http = config.fromString(MINIMAL + "stream_keepalive = 30\nmax_streams = 5\nmax_streams_per_client = 2\n").http
    assert (http.stream_keepalive, http.max_streams, http.max_streams_per_client) == (30.0, 5, 2)
    assert problems(MINIMAL + "stream_keepalive = 0\nmax_streams = 0\n") == [
        "test.ini [http] stream_keepalive: must be more than 0 seconds",
        "test.ini [http] max_streams: must be at least 1: '0'",
    ]
