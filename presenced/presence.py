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
answer.  At most L{PresenceTracker.maxResources} resources are kept per
user: beyond, the one updated least recently is dropped.

What a user shows I{looks} the same as before when its state, status
text, idle time and last-seen time are; only a change of those moves
C{since} and is told to the tracker's observers.  Times are reactor seconds, which are seconds
since the epoch in a running reactor.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Callable

import attr

if TYPE_CHECKING:
    from presenced.ratelimit import Limits


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
    return _SHOW_STATES.get(show, State.AVAILABLE)


_SHOW_STATES = {state.value: state for state in (State.CHAT, State.AWAY, State.XA, State.DND)}


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Shown:
    """
    What the HTTP side shows for a user.

    @ivar state: L{State.OFFLINE} or one of L{ONLINE_STATES}.
    @ivar status: the status text to show, if the user set one.
    @ivar stanza: for an online user, their shown resource's presence
        stanza as UTF-8 XML; C{None} when offline.
    @ivar since: when what the user shows last changed, as observed;
        C{None} when unknown.
    @ivar idleSince: since when the shown resource is idle (XEP-0319),
        if it says so.
    @ivar lastSeen: for an offline user, when their last resource went
        offline, if known.
    @ivar photo: the avatar hash the shown resource announces (XEP-0153):
        hexadecimal SHA-1, C{""} for no avatar, C{None} when it says
        nothing.
    """

    state: State
    status: str | None = None
    stanza: bytes | None = None
    since: float | None = None
    idleSince: float | None = None
    lastSeen: float | None = None
    photo: str | None = None

    def looksLike(self, other: Shown) -> bool:
        """
        Whether C{other} shows the same state, status text, idle time and
        last-seen time.
        """
        return (self.state is other.state and self.status == other.status
                and self.idleSince == other.idleSince and self.lastSeen == other.lastSeen)


OFFLINE = Shown(State.OFFLINE)


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True)
class ResourcePresence(Shown):
    """
    The current presence of one online resource; shown as it is when it
    is the user's most available resource.

    @ivar resource: the resource's name.
    @ivar priority: the resource's priority, -128 to 127.
    @ivar received: when the presence arrived (reactor seconds).
    """

    resource: str
    priority: int = 0
    received: float = 0.0

    def sortKey(self) -> tuple[int, int, float]:
        """
        Order resources so that the one to show is the greatest.
        """
        return (_AVAILABILITY_RANK[self.state], self.priority, self.received)


def _lastUpdate(presence: ResourcePresence) -> float:
    return presence.received


#: Told that what a user (a normalised bare JID) shows looks different now.
Observer = Callable[[str, Shown], None]


class PresenceTracker:
    """
    The presence of every user of one domain, by bare JID and resource.

    An online user's resources are kept in a tuple, the one shown first,
    so that L{shown} is a plain lookup and a user costs little memory.
    Offline users are kept once they were seen going offline (or were
    restored so), for their last status text and when they left.  A user
    keeps at most C{maxResources} resources, so that no user can make
    updates costly: a new resource beyond that replaces the one whose
    presence is the oldest, and C{limits} is told.

    @ivar observers: called with the user and what they show now, each
        time it comes to look different (see L{Shown.looksLike}).
    @ivar mostOnline: the most users online at once since it was last set
        (to the users online then, see L{presenced.reclaim}).
    """

    def __init__(self, maxResources: int = 32, limits: Limits | None = None) -> None:
        self.maxResources = maxResources
        self.limits = limits
        self._online: dict[str, tuple[ResourcePresence, ...]] = {}
        self._offline: dict[str, Shown] = {}
        self.observers: list[Observer] = []
        self.mostOnline = 0

    def available(self, user: str, presence: ResourcePresence) -> None:
        """
        Record that one of C{user}'s resources is online with C{presence}.

        @param user: the bare JID, normalised.
        @param presence: its C{since} is ignored: the tracker sets it.
        """
        current = self._online.get(user)
        if current is None:
            before = self._offline.pop(user, OFFLINE)
            self._show(user, before, (presence,), presence.received)
            if len(self._online) > self.mostOnline:
                self.mostOnline = len(self._online)
            return
        if len(current) == 1 and current[0].resource == presence.resource:
            self._show(user, current[0], (presence,), presence.received)
            return
        others = [p for p in current if p.resource != presence.resource]
        if len(others) >= self.maxResources:
            others.remove(min(reversed(others), key=_lastUpdate))
            if self.limits is not None:
                self.limits.hit("max_resources", "Dropped the oldest resource of a user who has more than "
                                                 "{max} online", max=self.maxResources)
        others.append(presence)
        resources = tuple(sorted(others, key=ResourcePresence.sortKey, reverse=True))
        self._show(user, current[0], resources, presence.received)

    def unavailable(self, user: str, resource: str | None, status: str | None, when: float) -> None:
        """
        Record that C{user}'s C{resource} went offline.

        @param resource: the resource that left, or C{None} when the
            unavailable presence came from the bare JID (all resources).
        @param status: the status text of the unavailable presence; kept
            for the offline answer when it was the user's last resource.
        @param when: when it went offline.
        """
        current = self._online.get(user)
        if current is None:
            before = self._offline.get(user, OFFLINE)
            self._leave(user, before, Shown(State.OFFLINE, status=status, lastSeen=before.lastSeen), when)
            return
        remaining = tuple(p for p in current if resource is not None and p.resource != resource)
        if remaining:
            self._show(user, current[0], remaining, when)
            return
        del self._online[user]
        self._leave(user, current[0], Shown(State.OFFLINE, status=status, lastSeen=when), when)

    def restore(self, user: str, status: str | None, lastSeen: float | None) -> None:
        """
        Know, as from before a restart, that C{user} went offline at
        C{lastSeen} with C{status}; nothing changes if they are online.
        """
        if user not in self._online:
            self._offline[user] = Shown(State.OFFLINE, status=status, since=lastSeen, lastSeen=lastSeen)

    def _show(self, user: str, before: Shown, resources: tuple[ResourcePresence, ...], when: float) -> None:
        top = resources[0]
        if top is not before:
            same = top.looksLike(before)
            since = before.since if same else when
            if top.since != since:
                top = attr.evolve(top, since=since)
                resources = (top,) + resources[1:]
            if not same:
                self._tell(user, top)
        self._online[user] = resources

    def _leave(self, user: str, before: Shown, after: Shown, when: float) -> None:
        same = after.looksLike(before)
        after = attr.evolve(after, since=before.since if same else when)
        self._offline[user] = after
        if not same:
            self._tell(user, after)

    def _tell(self, user: str, shown: Shown) -> None:
        for observer in self.observers:
            observer(user, shown)

    def shown(self, user: str) -> Shown:
        """
        What C{user} (a normalised bare JID) shows right now.
        """
        resources = self._online.get(user)
        if resources:
            return resources[0]
        return self._offline.get(user, OFFLINE)

    def onlineResources(self) -> list[tuple[str, str]]:
        """
        Every online C{(user, resource)}, as a snapshot.
        """
        return [(user, p.resource) for user, resources in self._online.items() for p in resources]

    def offlineUsers(self) -> list[tuple[str, Shown]]:
        """
        Every offline user the tracker keeps a record of (see L{unavailable}
        and L{restore}), with what they show, as a snapshot.
        """
        return list(self._offline.items())

    def isOnline(self, user: str, resource: str) -> bool:
        """
        Whether C{user}'s C{resource} is online.
        """
        return any(p.resource == resource for p in self._online.get(user, ()))

    def forget(self, user: str) -> None:
        """
        Forget C{user}'s presence: they are offline, and nothing is known
        of when they left or what they said.
        """
        before = self.shown(user)
        self._online.pop(user, None)
        self._offline.pop(user, None)
        if not before.looksLike(OFFLINE):
            self._tell(user, OFFLINE)

    def clear(self) -> None:
        """
        Forget who is online: presence is no longer known.  What is known
        of offline users stays true and is kept.
        """
        online, self._online = self._online, {}
        if self.observers:
            for user in online:
                self._tell(user, OFFLINE)

    def compact(self) -> None:
        """
        Rebuild the tables of online and offline users, which keep the
        room of every user they ever held, to the size of who they hold now.
        """
        self._online = dict(self._online)
        self._offline = dict(self._offline)

    def onlineCount(self) -> int:
        """
        The number of users with at least one online resource.
        """
        return len(self._online)

    def resourceCount(self) -> int:
        """
        The number of online resources, of all users.
        """
        return sum(map(len, self._online.values()))
