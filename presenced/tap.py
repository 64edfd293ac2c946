"""
The C{twistd presenced} command: options, and the service they build.
"""

from __future__ import annotations

import os
import platform
import socket

import twisted
from twisted.python import usage

from presenced import __version__
from presenced.access import ServedScope
from presenced.answers import AnswerRenderer, loadImages
from presenced.avatars import READ_TTL, AvatarCache, VCardReader
from presenced.client import ClientMode
from presenced.component import ComponentMode
from presenced.config import ConfigError, Settings, load
from presenced.events import EventsResource, PresenceEvents, WidgetResource
from presenced.feed import PresenceFeed
from presenced.link import LinkMonitor
from presenced.listeners import Listeners
from presenced.metrics import Metrics, MetricsResource
from presenced.presence import PresenceTracker
from presenced.ratelimit import Limits
from presenced.reclaim import MemoryReclaimer
from presenced.service import PresenceService
from presenced.sign import RequesterCheck
from presenced.store import LastSeenStore, WriterThread
from presenced.web import FORBIDDEN, HealthReport, HealthResource, StatusResource, buildSite


class Options(usage.Options):
    """
    Command-line options of C{twistd presenced}.
    """

    synopsis = "--config PATH"
    longdesc = (
        "Serve the live presence of an XMPP server's users over HTTP "
        "(status icons, text and XML), with the API of Openfire's Presence "
        "Service plugin. presenced connects to the server as a privileged "
        "external component (XEP-0114, XEP-0356). Settings are read from an "
        "INI file; see etc/presenced.ini for every key."
    )
    optParameters = [
        ["config", "c", None, "The INI settings file (required)."],
    ]

    def opt_version(self) -> None:
        """
        Print presenced's version, and the interpreter and Twisted it runs
        on, and exit.
        """
        print(runtimeVersion())
        raise SystemExit(0)

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config PATH is required")


def runtimeVersion() -> str:
    """
    presenced's version and what it runs on, e.g. C{presenced 1.0 (PyPy
    3.9.16, Twisted 25.5.0)}.
    """
    return (f"presenced {__version__} ({platform.python_implementation()} {platform.python_version()}, "
            f"Twisted {twisted.__version__})")


def loadSettings(path: str) -> Settings:
    """
    Load the settings, or exit with every problem in the file.
    """
    try:
        return load(path)
    except ConfigError as e:
        raise SystemExit(
            "presenced: refusing to start, the configuration has errors:\n"
            + "\n".join(f"  {problem}" for problem in e.problems)
        ) from None


def makeService(options: Options, reactor=None) -> PresenceService:
    """
    Build the daemon's service tree from the command-line options.

    Once the reactor runs (twistd has started the service by then), systemd
    is told that presenced is ready, if it asked to be (C{Type=notify}).
    """
    if reactor is None:
        from twisted.internet import reactor
    settings = loadSettings(options["config"])
    try:
        service = buildService(settings, reactor, configPath=options["config"], reloadOnHangup=True)
    except OSError as e:
        raise SystemExit(f"presenced: refusing to start: {e}") from None
    reactor.callWhenRunning(notifySystemd, "READY=1")
    return service


def buildService(settings: Settings, reactor, configPath: str | None = None,
                 reloadOnHangup: bool = False, storeThread=WriterThread) -> PresenceService:
    """
    The service tree for C{settings}, data flowing one way: the link and
    the mode's handlers feed the presence model, which the site reads
    through the access rules; all of them ask one served scope.  The
    store keeps what the model knows of offline users across restarts.

    @param configPath: the settings file that reloads read.
    @param reloadOnHangup: whether SIGHUP reloads it.
    @param storeThread: makes the thread the store writes on, given the
        reactor (see L{WriterThread}).
    @raise OSError: an icon cannot be read.
    """
    xmpp, presence, http = settings.xmpp, settings.presence, settings.http
    limits = Limits(reactor)
    tracker = PresenceTracker(presence.max_resources, limits)
    link = LinkMonitor(reactor)
    scope = ServedScope(xmpp.servedDomains)
    mode = (ClientMode if xmpp.mode == "client" else ComponentMode)(settings, reactor, tracker, link, scope, limits)
    feed = PresenceFeed(tracker, scope, reactor, mode.tracks)
    vcards = VCardReader(link, presence.roster_timeout)
    mode.connection.factory.limits = limits
    for handler in [link, feed, vcards, *mode.handlers]:
        handler.setHandlerParent(mode.connection)

    status = StatusResource(tracker, mode.policy, AnswerRenderer(loadImages(http.images), presence.labels), scope,
                            RequesterCheck.fromSettings(presence, reactor),
                            AvatarCache(vcards.photo, reactor, READ_TTL))
    health = HealthReport(link, tracker)
    events = PresenceEvents(
        tracker,
        render=lambda user, shown: status.renderer.jsonObject(status.renderer.published(shown), user),
        forbidden=lambda user: status.renderer.jsonObject(FORBIDDEN, user),
        decide=status.decide, clock=reactor, limits=limits)
    metrics = Metrics(reactor)
    site = buildSite(status, HealthResource(health), reactor,
                     {b"events": EventsResource(status, events), b"widget.js": WidgetResource(status)},
                     MetricsResource(metrics.registry), limits)
    site.reconfig(settings, status.renderer.images)
    listeners = Listeners(site, reactor, http.listen)
    listeners.stoppedListening.append(events.closeArrivedAt)
    service = PresenceService(
        settings, reactor, tracker=tracker, link=link, scope=scope, mode=mode, feed=feed, site=site,
        listeners=listeners, health=health,
        store=LastSeenStore(presence.store, tracker, reactor, storeThread), events=events, limits=limits,
        configPath=configPath, reloadOnHangup=reloadOnHangup,
    )
    MemoryReclaimer.forThisProcess(tracker, reactor).setServiceParent(service)
    metrics.watch(service)
    return service


def notifySystemd(state: str) -> None:
    """
    Send C{state} to systemd's notification socket (what C{sd_notify}
    does), when systemd runs presenced with one in C{$NOTIFY_SOCKET}.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifications:
        notifications.connect(address)
        notifications.sendall(state.encode())
