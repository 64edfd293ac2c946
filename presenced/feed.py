"""
Ingestion: presence stanzas from the server into the presence model.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Container, NamedTuple

from twisted.internet.interfaces import IReactorTime
from twisted.words.xish import domish
from wokkel.subprotocols import XMPPHandler

from presenced.access import ServedScope
from presenced.answers import NS_XML, stanzaXML
from presenced.presence import PresenceTracker, ResourcePresence, stateFromShow

if TYPE_CHECKING:
    from presenced.metrics import Metrics

#: Longest status text kept; longer ones are cut.
MAX_STATUS = 1024

NS_IDLE = "urn:xmpp:idle:1"
NS_VCARD_UPDATE = "vcard-temp:x:update"

_PHOTO_HASH = re.compile("[0-9a-fA-F]{40}")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))")


def parseDateTime(text: str | None) -> float | None:
    """
    The seconds since the epoch of an XEP-0082 date and time
    (C{2026-12-02T19:00:05Z}, C{...05.123+01:00}), fractions dropped, or
    C{None} if C{text} is not one.
    """
    if text is None or len(text) > 40:
        return None
    match = _DATETIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, sign, offsetHours, offsetMinutes = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                          tzinfo=timezone.utc)
    except ValueError:
        return None
    if sign is not None:
        if int(offsetHours) > 23 or int(offsetMinutes) > 59:
            return None
        offset = timedelta(hours=int(offsetHours), minutes=int(offsetMinutes))
        try:
            moment -= offset if sign == "+" else -offset
        except OverflowError:
            return None
    return (moment - _EPOCH).total_seconds()


def _serverStampedSender(text: str | None, domains: Container[str]) -> tuple[str, str | None] | None:
    """
    Split the C{from} of a presence the server forwards into the user's
    bare JID and resource, if it is a user of one of C{domains}.

    The server stamps C{from} with the sender's normalised JID (RFC 6120,
    8.1.2.1), so it is compared as it is, without redoing stringprep; a
    sender that is not exactly C{user@domain[/resource]} is not a user of
    a served domain.
    """
    if not text:
        return None
    bare, slash, resource = text.partition("/")
    user, at, host = bare.partition("@")
    if not at or not user or host not in domains or len(bare) > 2048 or len(resource) > 1023:
        return None
    if slash and not resource:
        return None
    return bare, resource or None


class PresenceFields(NamedTuple):
    """
    What presenced reads from a presence stanza.
    """

    show: str | None
    status: str | None
    priority: int
    idleSince: float | None
    photo: str | None


def _presenceFields(element: domish.Element) -> PresenceFields:
    """
    The C{<show/>}, status text, priority, XEP-0319 idle time and
    XEP-0153 avatar hash of a presence, read in one pass over its
    children.

    The status text is the one without C{xml:lang}, else the first one,
    cut to L{MAX_STATUS}; an unparseable priority is 0, and priorities are
    held to -128..127; an idle time that is not a valid date is ignored,
    and so is an avatar hash that is not a SHA-1.
    """
    show = priority = plainStatus = firstStatus = idle = photo = None
    for child in element.children:
        if not isinstance(child, domish.Element):
            continue
        name = child.name
        if child.uri != element.uri:
            if idle is None and name == "idle" and child.uri == NS_IDLE:
                idle = child.attributes.get("since", "")
            elif photo is None and name == "x" and child.uri == NS_VCARD_UPDATE:
                photo = _photoHash(child)
            continue
        if name == "status":
            if (NS_XML, "lang") not in child.attributes:
                if plainStatus is None:
                    plainStatus = str(child)
            elif firstStatus is None:
                firstStatus = str(child)
        elif name == "show":
            if show is None:
                show = str(child)
        elif name == "priority" and priority is None:
            priority = str(child)
    status = (plainStatus if plainStatus is not None else firstStatus or "").strip()[:MAX_STATUS] or None
    return PresenceFields(show, status, _priority(priority), parseDateTime(idle), photo)


def _photoHash(update: domish.Element) -> str | None:
    for photo in update.elements(NS_VCARD_UPDATE, "photo"):
        text = str(photo).strip()
        if not text:
            return ""
        return text.lower() if _PHOTO_HASH.fullmatch(text) else None
    return None


def _priority(text: str | None) -> int:
    try:
        value = int(text.strip()) if text is not None else 0
    except ValueError:
        return 0
    return max(-128, min(127, value))


class PresenceFeed(XMPPHandler):
    """
    Feeds every presence of the served domains' users into the model, or
    of those users that C{tracks} accepts.

    Presence from other domains, from the bare domain, with an unparseable
    sender, or of types other than available and unavailable is ignored.
    When the link is lost, the model is cleared: presence is no longer
    known.

    @ivar tracks: whether to track a user (a normalised bare JID) of a
        served domain; C{None} tracks all of them.
    @ivar metrics: told of every presence stanza; C{None}: nothing is.
    """

    metrics: Metrics | None = None

    def __init__(self, tracker: PresenceTracker, scope: ServedScope, clock: IReactorTime,
                 tracks: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.scope = scope
        self.clock = clock
        self.tracks = tracks

    def connectionInitialized(self) -> None:
        self.xmlstream.addObserver("/presence", self.onPresence)

    def connectionLost(self, reason) -> None:
        self.tracker.clear()

    def onPresence(self, element: domish.Element) -> None:
        """
        Record one presence stanza.
        """
        if self.metrics is not None:
            self.metrics.presenceReceived()
        sender = _serverStampedSender(element.getAttribute("from"), self.scope.domains)
        if sender is None:
            return
        user, resource = sender
        if self.tracks is not None and not self.tracks(user):
            return
        kind = element.getAttribute("type")
        if kind == "unavailable":
            self.tracker.unavailable(user, resource, _presenceFields(element).status, self.clock.seconds())
        elif kind is None and resource is not None:
            self.tracker.available(user, self._resourcePresence(element, resource))

    def _resourcePresence(self, element: domish.Element, resource: str) -> ResourcePresence:
        element.attributes.pop("to", None)
        fields = _presenceFields(element)
        return ResourcePresence(
            resource=resource,
            state=stateFromShow(fields.show),
            status=fields.status,
            priority=fields.priority,
            idleSince=fields.idleSince,
            photo=fields.photo,
            received=self.clock.seconds(),
            stanza=stanzaXML(element),
        )
