"""
The presence model: what presenced knows about each user's presence.

Pure Python with no I/O: the XMPP side feeds it, the web side reads it.

Which presence a user shows
===========================
A user may be online with several resources (clients) at once.  The one
shown is the I{most available}: C{chat} beats plain available, which beats
C{away}, then C{xa}, then C{dnd}.  Between equally available resources the
higher priority wins, and between those the most recently received
presence.  A user with no online resource is offline; if their last
resource went away with a status text, that text is kept for the offline
answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    """
    The states a status icon can show.

    The value is the name used in the HTTP API (image names, the
    C{--IMAGE--} token and the per-state URL parameters).
    """

    CHAT = "chat"
    AVAILABLE = "available"
    AWAY = "away"
    XA = "xa"
    DND = "dnd"
    OFFLINE = "offline"
    FORBIDDEN = "forbidden"


ONLINE_STATES = (State.CHAT, State.AVAILABLE, State.AWAY, State.XA, State.DND)

_AVAILABILITY_RANK = {state: rank for rank, state in enumerate(reversed(ONLINE_STATES))}


def stateFromShow(show: str | None) -> State:
    """
    Map the C{<show/>} of an available presence to a L{State}.

    A missing or unknown C{<show/>} means plain available (RFC 6121, 4.7.2.1).
    """
    if show in ("chat", "away", "xa", "dnd"):
        return State(show)
    return State.AVAILABLE


@dataclass(frozen=True, slots=True)
class ResourcePresence:
    """
    The current presence of one online resource.

    @ivar state: one of L{ONLINE_STATES}.
    @ivar status: the status text, if any.
    @ivar priority: the resource's priority, -128 to 127.
    @ivar received: when the presence arrived (reactor seconds).
    @ivar stanza: the presence stanza as XML, addressed from the full JID.
    """

    state: State
    status: str | None
    priority: int
    received: float
    stanza: str

    def sortKey(self) -> tuple[int, int, float]:
        """
        Order resources so that the one to show is the greatest.
        """
        return (_AVAILABILITY_RANK[self.state], self.priority, self.received)


@dataclass(frozen=True, slots=True)
class Shown:
    """
    What the HTTP side shows for a user.

    @ivar state: L{State.OFFLINE} or one of L{ONLINE_STATES}.
    @ivar status: the status text to show, if the user set one.
    @ivar stanza: for an online user, their shown resource's presence
        stanza as XML; C{None} when offline.
    """

    state: State
    status: str | None = None
    stanza: str | None = None


OFFLINE = Shown(State.OFFLINE)


@dataclass(slots=True)
class _User:
    resources: dict[str, ResourcePresence] = field(default_factory=dict)
    shown: Shown = OFFLINE


class PresenceTracker:
    """
    The presence of every user of one domain, by bare JID and resource.

    Updates recompute what the user shows, so that L{shown} is a plain
    lookup.
    """

    def __init__(self) -> None:
        self._users: dict[str, _User] = {}
        self._online = 0

    def available(self, user: str, resource: str, presence: ResourcePresence) -> None:
        """
        Record that C{user}'s C{resource} is online with C{presence}.

        @param user: the bare JID, normalised.
        """
        entry = self._users.get(user)
        if entry is None:
            entry = self._users[user] = _User()
        if not entry.resources:
            self._online += 1
        entry.resources[resource] = presence
        entry.shown = _choose(entry.resources)

    def unavailable(self, user: str, resource: str | None, status: str | None) -> None:
        """
        Record that C{user}'s C{resource} went offline.

        @param resource: the resource that left, or C{None} when the
            unavailable presence came from the bare JID (all resources).
        @param status: the status text of the unavailable presence; kept
            for the offline answer when it was the user's last resource.
        """
        entry = self._users.get(user)
        if entry is None:
            entry = self._users[user] = _User()
        wasOnline = bool(entry.resources)
        if resource is None:
            entry.resources.clear()
        else:
            entry.resources.pop(resource, None)
        if wasOnline and not entry.resources:
            self._online -= 1
        if entry.resources:
            entry.shown = _choose(entry.resources)
        elif status:
            entry.shown = Shown(State.OFFLINE, status=status)
        else:
            del self._users[user]

    def shown(self, user: str) -> Shown:
        """
        What C{user} (a normalised bare JID) shows right now.
        """
        entry = self._users.get(user)
        return OFFLINE if entry is None else entry.shown

    def clear(self) -> None:
        """
        Forget everything: presence is no longer known.
        """
        self._users.clear()
        self._online = 0

    def onlineCount(self) -> int:
        """
        The number of users with at least one online resource.
        """
        return self._online


def _choose(resources: dict[str, ResourcePresence]) -> Shown:
    best = max(resources.values(), key=ResourcePresence.sortKey)
    return Shown(best.state, best.status, best.stanza)
