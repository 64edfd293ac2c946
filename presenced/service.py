"""
The daemon's top service: it holds the XMPP link feeding the presence
model and the HTTP listeners serving it (built by L{presenced.tap}), and
reloads the settings on SIGHUP.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import TYPE_CHECKING

from twisted.application.service import IService, MultiService
from twisted.internet import defer
from twisted.logger import Logger

from presenced.access import ServedScope
from presenced.answers import loadImages
from presenced.client import ClientMode
from presenced.component import ComponentMode
from presenced.config import ConfigError, ReloadRefused, Settings, load
from presenced.feed import PresenceFeed
from presenced.link import LinkMonitor
from presenced.listeners import Listeners
from presenced.presence import PresenceTracker
from presenced.ratelimit import Limits
from presenced.store import LastSeenStore, StoreError
from presenced.web import AccessLog, HealthReport, PresenceSite

if TYPE_CHECKING:
    from presenced.metrics import Metrics


class PresenceService(MultiService):
    """
    presenced as one service: XMPP → presence model → HTTP.

    Its children are named C{store} (the embedded store, L{LastSeenStore},
    started first so that the model holds what it restores before the link
    starts), C{xmpp} (the link to the server) and C{http} (the listeners,
    L{Listeners}); C{buildService} adds C{reclaim}, which gives memory
    back once many users went offline.  L{reload} re-reads the settings
    file at C{configPath}; with C{reloadOnHangup}, SIGHUP does that, from the
    moment the service is built: one that arrives before the service has
    started (while twistd binds its ports and drops privileges) is applied
    once it has, and one after it has stopped is ignored.

    A reload works as buildbot's does: the whole file is loaded and
    checked first, with everything it names (icons, access log, TLS
    certificates, the link's credentials, a new store file), and nothing
    changes if any of it is wrong or cannot change while presenced runs.  Then each part is
    handed the new settings in this order: the listeners (the one step
    that can still fail, by not binding a new port; it then undoes itself,
    so it goes first), the served scope (one object, which the feed, the
    access rules and the web side all ask), the site and its resources,
    the mode (access and the mode's handlers), the store, and last the
    link, which reconnects if its settings changed.

    @ivar settings: the settings in force.
    @ivar tracker: the presence model.
    @ivar link: whether the XMPP link is up.
    @ivar scope: the served domains.
    @ivar mode: the component or client mode.
    @ivar store: the embedded store.
    @ivar connection: the link service.
    @ivar site: the HTTP site.
    @ivar listeners: its listening ports.
    @ivar health: the health summary.
    @ivar events: the open event streams, ended when presenced stops.
    @ivar limits: where every limit tells what it refuses, cut or drops.
    @ivar metrics: told how each reload ended (C{"ok"}, C{"failed"} or
        C{"refused"}, see L{presenced.metrics.RELOAD_RESULTS}); C{None}:
        nothing is.
    """

    log = Logger()

    def __init__(self, settings: Settings, reactor, *, tracker: PresenceTracker, link: LinkMonitor,
                 scope: ServedScope, mode: ComponentMode | ClientMode, feed: PresenceFeed, site: PresenceSite,
                 listeners: Listeners, health: HealthReport, store: LastSeenStore,
                 events: IService | None = None, limits: Limits | None = None, configPath: str | None = None,
                 reloadOnHangup: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        self.configPath = configPath
        self.reloadOnHangup = reloadOnHangup
        self.tracker = tracker
        self.link = link
        self.scope = scope
        self.mode = mode
        self.feed = feed
        self.connection = mode.connection
        self.site = site
        self.listeners = listeners
        self.health = health
        self.store = store
        self.limits = Limits(reactor) if limits is None else limits
        self.metrics: Metrics | None = None
        self._reloading: defer.Deferred[bool] | None = None
        self._reloadAgain: defer.Deferred[bool] | None = None
        self._reloadOnStart = False
        self.store.setName("store")
        self.store.setServiceParent(self)
        self.connection.setName("xmpp")
        self.connection.setServiceParent(self)
        self.listeners.setServiceParent(self)
        self.events = events
        if events is not None:
            events.setServiceParent(self)
        if reloadOnHangup:
            signal.signal(signal.SIGHUP, self._hangup)

    def _openAccessLog(self, target: str) -> AccessLog | None:
        return None if target == "off" else AccessLog(target, self.reactor)

    def startService(self) -> None:
        """
        Open the access log, then start the store, the link and the
        listeners.

        twistd calls this after switching to its C{--uid}/C{--gid} (ports
        are bound before that, by C{privilegedStartService}): the access
        log is opened, or created, by the account that reopens it on
        reloads.

        @raise SystemExit: the access log cannot be opened, or the store
            cannot be used; the message says which and why.
        """
        try:
            self.site.setAccessLog(self._openAccessLog(self.settings.http.access_log))
            super().startService()
        except (OSError, StoreError) as e:
            raise SystemExit(f"presenced: refusing to start: {e}") from None
        if self._reloadOnStart:
            self._reloadOnStart = False
            self.reload()

    def stopService(self) -> defer.Deferred:
        self.site.setAccessLog(None)
        return super().stopService()

    def _hangup(self, signum, frame) -> None:
        self.reactor.callFromThread(self._reloadWhenRunning)

    def _reloadWhenRunning(self) -> None:
        if self.running:
            self.reload()
        else:
            self._reloadOnStart = True

    def reload(self) -> defer.Deferred[bool]:
        """
        Re-read the settings file and apply what changed.

        Reloads never overlap: asked for during a reload, one more reload
        runs after it (however often it was asked for).  Every reload ends
        with a log line saying how it went.

        @return: fires with whether new settings were applied (C{False}
            when the file had errors or the change could not be made).
        """
        if self._reloading is None:
            reloading = self._reloading = defer.ensureDeferred(self._reloadOnce())
            reloading.addErrback(self._reloadFailed)
            reloading.addCallback(self._counted)
            reloading.addBoth(self._reloaded)
            return _follow(reloading)
        if self._reloadAgain is None:
            self._reloadAgain = defer.Deferred()
        return _follow(self._reloadAgain)

    def _reloadFailed(self, failure) -> str:
        self.log.failure("Reload failed", failure)
        return "failed"

    def _counted(self, result: str) -> bool:
        if self.metrics is not None:
            self.metrics.reloaded(result)
        return result == "ok"

    def _reloaded(self, result):
        self._reloading = None
        if self._reloadAgain is not None:
            waiting, self._reloadAgain = self._reloadAgain, None
            self.reload().chainDeferred(waiting)
        return result

    async def _reloadOnce(self) -> str:
        self.log.info("Reloading the settings from {path}", path=self.configPath)
        try:
            new = load(self.configPath)
        except ConfigError as e:
            for problem in e.problems:
                self.log.error("{problem}", problem=problem)
            self.log.error("Reload aborted: the configuration has errors; nothing was changed")
            return "failed"
        old, accessLog, storeFile = self.settings, None, None
        try:
            images, certificates, authenticator, storeFile = self._prepare(old, new)
            # The access log file is reopened on every reload, for log rotation.
            accessLog = self._openAccessLog(new.http.access_log)
            await self.listeners.reconfig(new, certificates)
        except (ReloadRefused, OSError) as e:
            _close(accessLog, storeFile)
            self.log.error("Reload aborted: {why}; nothing was changed", why=e)
            return "refused"
        except Exception:
            _close(accessLog, storeFile)
            self.log.failure("Reload aborted: the new settings could not be read; nothing was changed")
            return "failed"

        self.site.setAccessLog(accessLog)
        changes = _differences(old, new)
        if not changes:
            self.log.info("Reload done: nothing changed")
            return "ok"
        try:
            self.scope.reconfig(new)
            self.site.reconfig(new, images)
            self.tracker.maxResources = new.presence.max_resources
            self.mode.reconfig(new)
            self.store.reconfig(new.presence.store, storeFile)
            self.settings = new
            if new.xmpp != old.xmpp:
                await self.connection.reconnect(new.xmpp, authenticator)
        except Exception:
            self.log.failure("Reload failed while applying the new settings; what was applied stays, "
                             "restart presenced to be sure of the rest")
            return "failed"
        self.log.info("Reload done; changed: {changes}", changes=", ".join(changes))
        return "ok"

    def _prepare(self, old: Settings, new: Settings):
        """
        What the new settings name, read and checked before anything
        changes: the icons, the certificates of kept TLS listeners, the
        link's authenticator when the link's settings changed, and a store
        file they move the store to (opened last: the caller closes it if
        the reload is aborted later).

        @raise ReloadRefused: something cannot be used or cannot change at
            runtime.
        """
        if new.xmpp.mode != old.xmpp.mode:
            raise ReloadRefused("[xmpp] mode cannot change while presenced runs; restart it instead")
        try:
            images = loadImages(new.http.images)
        except OSError as e:
            raise ReloadRefused(f"cannot read the icons ({e})") from None
        certificates = self.listeners.readCertificates(new)
        authenticator = None
        if new.xmpp != old.xmpp:
            try:
                authenticator = self.connection.authenticatorFor(new.xmpp)
            except Exception as e:
                raise ReloadRefused(f"cannot use the new [xmpp] settings ({e})") from None
        try:
            storeFile = self.store.prepare(new.presence.store)
        except StoreError as e:
            raise ReloadRefused(str(e)) from None
        return images, certificates, authenticator, storeFile


def _close(*opened) -> None:
    """
    Close what a reload opened before it was aborted.
    """
    for thing in opened:
        if thing is not None:
            thing.close()


def _follow(d: defer.Deferred) -> defer.Deferred:
    """
    A Deferred that fires with C{d}'s result, leaving C{d} as it is.
    """
    follower: defer.Deferred = defer.Deferred()

    def passOn(result):
        follower.callback(result)
        return result

    d.addCallback(passOn)
    return follower


def _differences(old: Settings, new: Settings) -> list[str]:
    """
    What changed between two settings, as C{section.key} names.
    """
    changed = []
    for section in dataclasses.fields(Settings):
        before, after = getattr(old, section.name), getattr(new, section.name)
        for key in dataclasses.fields(before):
            if getattr(before, key.name) != getattr(after, key.name):
                changed.append(f"{section.name}.{key.name}")
    return changed
