"""
The daemon's service tree: the XMPP link feeding the presence model, and
the HTTP listeners serving it; and reloading its settings.
"""

from __future__ import annotations

import dataclasses
import signal
from datetime import datetime, timezone

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger

from presenced import __version__
from presenced.answers import AnswerRenderer, loadImages
from presenced.config import ConfigError, PresenceSettings, Settings, load
from presenced.presence import PresenceTracker
from presenced.sign import RequesterCheck
from presenced.tls import RenewableTLS, isTLS, readTLSOptions
from presenced.web import AccessLog, HealthResource, StatusResource, buildSite
from presenced.client import ClientMode
from presenced.component import ComponentMode
from presenced.feed import PresenceFeed
from presenced.link import LinkMonitor


class PresenceService(MultiService):
    """
    presenced as one service: XMPP → presence model → HTTP.

    Its children are named C{xmpp} (the link to the server) and C{http} (the
    listeners).  L{reload} re-reads the settings file at C{configPath};
    with C{reloadOnHangup}, SIGHUP does that, from the moment the service
    is built: one that arrives before the service has started (while
    twistd binds its ports and drops privileges) is applied once it has,
    and one after it has stopped is ignored.

    @ivar settings: the settings in force.
    @ivar tracker: the presence model.
    @ivar link: whether the XMPP link is up.
    @ivar site: the HTTP site.
    """

    log = Logger()

    def __init__(self, settings: Settings, reactor, configPath: str | None = None,
                 reloadOnHangup: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        self.configPath = configPath
        self.reloadOnHangup = reloadOnHangup
        self.tracker = PresenceTracker()
        self._reloading: defer.Deferred[bool] | None = None
        self._reloadAgain: defer.Deferred[bool] | None = None
        self._reloadOnStart = False

        xmpp, presence = settings.xmpp, settings.presence
        self.link = LinkMonitor(reactor)
        self.mode = (ClientMode if xmpp.mode == "client" else ComponentMode)(settings, reactor, self.tracker, self.link)
        self.feed = PresenceFeed(self.tracker, xmpp.servedDomains, reactor, self.mode.tracks)
        self.connection = self.mode.connection
        self.connection.setName("xmpp")
        self.connection.setServiceParent(self)
        for handler in [self.link, self.feed, *self.mode.handlers]:
            handler.setHandlerParent(self.connection)

        renderer = AnswerRenderer(loadImages(settings.http.images), presence.labels)
        self.status = StatusResource(self.tracker, self.mode.policy, renderer, xmpp.servedDomains,
                                     _requesterCheck(presence, reactor))
        self.healthResource = HealthResource(self.health)
        self.healthResource.detailsFrom = settings.http.health_details_from
        self.site = buildSite(self.status, self.healthResource, reactor)
        self.site.logFormatter.trusted = settings.http.trusted_proxies
        self.status.redirectHosts = settings.http.redirect_hosts

        self.http = MultiService()
        self.http.setName("http")
        self.http.setServiceParent(self)
        self.listeners = {}
        self.tls: dict[str, RenewableTLS] = {}
        for description in settings.http.listen:
            self.listeners[description] = self._listener(description)
            self.listeners[description].setServiceParent(self.http)
        if reloadOnHangup:
            signal.signal(signal.SIGHUP, self._hangup)

    def _listener(self, description: str):
        if not isTLS(description):
            return strports.service(description, self.site, reactor=self.reactor)
        tls = RenewableTLS()
        listener = strports.service(description, self.site, reactor=tls.listeningWith(self.reactor))
        self.tls[description] = tls
        return listener

    def _openAccessLog(self, target: str) -> AccessLog | None:
        return None if target == "off" else AccessLog(target, self.reactor)

    def health(self) -> tuple[bool, dict]:
        """
        Whether presence is known, and a summary for monitoring.
        """
        since = self.link.since
        return self.link.connected, {
            "xmpp": "connected" if self.link.connected else "disconnected",
            "since": None if since is None else datetime.fromtimestamp(since, timezone.utc).isoformat(),
            "users_online": self.tracker.onlineCount(),
            "version": __version__,
        }

    def startService(self) -> None:
        """
        Open the access log, then start the link and the listeners.

        twistd calls this after switching to its C{--uid}/C{--gid} (ports
        are bound before that, by C{privilegedStartService}): the access
        log is opened, or created, by the account that reopens it on
        reloads.

        @raise OSError: the access log cannot be opened.
        """
        self.site.setAccessLog(self._openAccessLog(self.settings.http.access_log))
        super().startService()
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
        runs after it (however often it was asked for).

        @return: fires with whether new settings were applied (C{False}
            when the file had errors or the change could not be made).
        """
        if self._reloading is None:
            reloading = self._reloading = defer.ensureDeferred(self._reloadOnce())
            reloading.addBoth(self._reloaded)
            return _follow(reloading)
        if self._reloadAgain is None:
            self._reloadAgain = defer.Deferred()
        return _follow(self._reloadAgain)

    def _reloaded(self, result):
        self._reloading = None
        if self._reloadAgain is not None:
            waiting, self._reloadAgain = self._reloadAgain, None
            self.reload().chainDeferred(waiting)
        return result

    async def _reloadOnce(self) -> bool:
        self.log.info("Reloading the settings from {path}", path=self.configPath)
        try:
            new = load(self.configPath)
            images = loadImages(new.http.images)
            accessLog = self._openAccessLog(new.http.access_log)
        except ConfigError as e:
            for problem in e.problems:
                self.log.error("{problem}", problem=problem)
            self.log.error("Reload aborted: the configuration has errors; nothing was changed")
            return False
        except OSError as e:
            self.log.error("Reload aborted: {why}; nothing was changed", why=e)
            return False
        old = self.settings

        def abort(reason: str, **fields) -> bool:
            if accessLog is not None:
                accessLog.close()
            self.log.error(reason, **fields)
            return False

        try:
            # Certificates are read again on every reload, for renewals.
            renewed = {d: readTLSOptions(d) for d in self.tls if d in new.http.listen}
        except Exception as e:
            return abort("Reload aborted: cannot read a TLS certificate ({why}); nothing was changed", why=e)
        if new.xmpp.mode != old.xmpp.mode:
            return abort("Reload aborted: [xmpp] mode cannot change while presenced runs; "
                         "restart it instead. Nothing was changed")
        changes = _differences(old, new)
        if changes:
            try:
                await self._rebind(new.http.listen)
            except Exception as e:
                return abort("Reload aborted: cannot listen ({why}); nothing was changed", why=e)

        # The access log file is reopened on every reload, for log rotation.
        self.site.setAccessLog(accessLog)
        for description, options in renewed.items():
            self.tls[description].options = options
            self.log.info("Certificate of {description} read again", description=description)
        if not changes:
            self.log.info("Reload done: nothing changed")
            return True
        self.mode.apply(new)
        self.status.renderer = AnswerRenderer(images, new.presence.labels)
        self.status.requesters = _requesterCheck(new.presence, self.reactor)
        self.status.domains = self.feed.domains = new.xmpp.servedDomains
        self.site.logFormatter.trusted = new.http.trusted_proxies
        self.status.redirectHosts = new.http.redirect_hosts
        self.healthResource.detailsFrom = new.http.health_details_from
        self.settings = new
        if new.xmpp != old.xmpp:
            await self.connection.reconnect(new.xmpp)
        self.log.info("Reload done; changed: {changes}", changes=", ".join(changes))
        return True

    async def _rebind(self, listen: tuple[str, ...]) -> None:
        """
        Listen on the new endpoints, then stop listening on the old ones.

        If any new endpoint cannot listen, the other new ones are closed
        again and the old ones are kept.
        """
        started = {}
        try:
            for description in listen:
                if description not in self.listeners:
                    started[description] = self._listener(description)
                    started[description].setServiceParent(self.http)
        except Exception:
            for description, listener in started.items():
                await listener.disownServiceParent()
                self.tls.pop(description, None)
            raise
        for description in [d for d in self.listeners if d not in listen]:
            await self.listeners.pop(description).disownServiceParent()
            self.tls.pop(description, None)
        self.listeners.update(started)


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


def _requesterCheck(presence: PresenceSettings, clock) -> RequesterCheck:
    return RequesterCheck(presence.requester_keys, presence.require_signature, clock)


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
