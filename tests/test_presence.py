"""
Tests for L{presenced.presence}: the model and the rule that picks what a
user shows.
"""

from presenced.presence import OFFLINE, PresenceTracker, ResourcePresence, State, stateFromShow


def presence(state=State.AVAILABLE, status=None, priority=0, received=0.0, stanza=b"<presence/>", resource="r",
             idleSince=None):
    return ResourcePresence(state=state, status=status, priority=priority, received=received,
                            stanza=stanza, resource=resource, idleSince=idleSince)


def observed(tracker):
    """
    The list that C{tracker}'s observers' calls are appended to, as
    C{(user, state, status)}.
    """
    calls = []
    tracker.observers.append(lambda user, shown: calls.append((user, shown.state, shown.status)))
    return calls


def test_unknownUserIsOffline():
    """
    A user the tracker never heard of is offline, with no status.
    """
    assert PresenceTracker().shown("nobody@example.test") is OFFLINE


def test_singleResourceIsShown():
    """
    A user with one online resource shows that resource's state, status
    and stanza.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.AWAY, "Out", stanza=b"<p/>", resource="home"))
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.stanza) == (State.AWAY, "Out", b"<p/>")


def test_mostAvailableResourceWins():
    """
    Chat beats available, which beats away, xa and dnd, whatever the
    priorities.
    """
    order = [State.DND, State.XA, State.AWAY, State.AVAILABLE, State.CHAT]
    tracker = PresenceTracker()
    for number, state in enumerate(order):
        tracker.available("a@example.test", presence(state, priority=10 - number, resource=f"r{number}"))
        assert tracker.shown("a@example.test").state is state


def test_higherPriorityBreaksTies():
    """
    Between equally available resources, the higher priority wins.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(status="high", priority=5, received=1, resource="high"))
    tracker.available("a@example.test", presence(status="low", priority=1, received=2, resource="low"))
    assert tracker.shown("a@example.test").status == "high"


def test_mostRecentBreaksRemainingTies():
    """
    Between equally available resources of equal priority, the most
    recently received presence wins.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(status="new", received=2, resource="new"))
    tracker.available("a@example.test", presence(status="old", received=1, resource="old"))
    assert tracker.shown("a@example.test").status == "new"


def test_updateReplacesResource():
    """
    A new presence from a resource replaces its previous one.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.CHAT, resource="r"))
    tracker.available("a@example.test", presence(State.DND, resource="r"))
    assert tracker.shown("a@example.test").state is State.DND
    tracker.available("a@example.test", presence(State.AWAY, resource="s"))
    tracker.available("a@example.test", presence(State.XA, resource="s"))
    assert tracker.shown("a@example.test").state is State.XA
    assert len(tracker.onlineResources()) == 2


def test_otherResourceShownAfterOneLeaves():
    """
    When the shown resource goes offline, the best remaining one is shown.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.CHAT, resource="chat"))
    tracker.available("a@example.test", presence(State.AWAY, resource="away"))
    tracker.unavailable("a@example.test", "chat", "bye", 0.0)
    assert tracker.shown("a@example.test").state is State.AWAY


def test_lastResourceLeavingKeepsStatus():
    """
    When the last resource goes offline with a status text, the user is
    offline with that text.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("a@example.test", "r", "Gone fishing", 0.0)
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.stanza) == (State.OFFLINE, "Gone fishing", None)


def test_lastResourceLeavingWithoutStatus():
    """
    When the last resource goes offline without a status text, the user
    is offline without one, last seen then.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r", received=5.0))
    tracker.unavailable("a@example.test", "r", None, 9.0)
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.lastSeen, shown.since) == (State.OFFLINE, None, 9.0, 9.0)


def test_laterUnavailableWithoutStatusDropsTheKeptStatus():
    """
    An offline user's kept status text goes when they send another
    unavailable presence without one; when they were last seen stays.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("a@example.test", "r", "Gone fishing", 3.0)
    tracker.unavailable("a@example.test", None, None, 7.0)
    shown = tracker.shown("a@example.test")
    assert (shown.status, shown.lastSeen, shown.since) == (None, 3.0, 7.0)


def test_unavailableOfUserNeverSeenOnline():
    """
    An unavailable presence of a user who was not online keeps its status
    text but does not make up when they were last seen.
    """
    tracker = PresenceTracker()
    tracker.unavailable("a@example.test", "r", "Away for the week", 4.0)
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.lastSeen, shown.since) == (
        State.OFFLINE, "Away for the week", None, 4.0)


def test_forgottenUserIsOfflineWithoutStatus():
    """
    A forgotten user is offline without a status or last-seen time,
    whether they were online or offline with a kept status text.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("b@example.test", "r", "Gone fishing", 0.0)
    tracker.forget("a@example.test")
    tracker.forget("b@example.test")
    assert tracker.shown("a@example.test") is OFFLINE
    assert tracker.shown("b@example.test") is OFFLINE
    assert tracker.onlineCount() == 0


def test_bareUnavailableRemovesAllResources():
    """
    An unavailable presence from the bare JID takes every resource offline.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="one"))
    tracker.available("a@example.test", presence(resource="two"))
    tracker.unavailable("a@example.test", None, None, 0.0)
    assert tracker.shown("a@example.test").state is State.OFFLINE
    assert tracker.onlineCount() == 0


def test_unavailableForUnknownResource():
    """
    An unavailable presence for a resource that was not online leaves the
    others as they are.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.XA, resource="one"))
    tracker.unavailable("a@example.test", "ghost", "x", 0.0)
    assert tracker.shown("a@example.test").state is State.XA


def test_clearForgetsWhoIsOnline():
    """
    After clear, every online user is offline, nothing known of when they
    left; users already offline keep their status text and last-seen time.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.available("b@example.test", presence(resource="r"))
    tracker.unavailable("b@example.test", "r", "later", 6.0)
    tracker.clear()
    assert tracker.shown("a@example.test") is OFFLINE
    assert tracker.onlineCount() == 0
    shown = tracker.shown("b@example.test")
    assert (shown.state, shown.status, shown.lastSeen) == (State.OFFLINE, "later", 6.0)


def test_sinceIsWhenWhatIsShownChanged():
    """
    C{since} is when the state, status text or idle time shown last
    changed: a new presence that looks the same keeps it.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.AWAY, "Lunch", priority=1, received=10.0))
    tracker.available("a@example.test", presence(State.AWAY, "Lunch", priority=5, received=20.0))
    assert tracker.shown("a@example.test").since == 10.0
    tracker.available("a@example.test", presence(State.AWAY, "Lunch", received=30.0, idleSince=25.0))
    assert tracker.shown("a@example.test").since == 30.0
    tracker.available("a@example.test", presence(State.AWAY, "Back soon", received=40.0, idleSince=25.0))
    assert tracker.shown("a@example.test").since == 40.0


def test_sinceKeptWhenAnotherResourceLooksTheSame():
    """
    When the shown resource changes to one that looks the same, C{since}
    stays.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="one", received=10.0))
    tracker.available("a@example.test", presence(resource="two", received=20.0))
    tracker.unavailable("a@example.test", "two", None, 30.0)
    assert tracker.shown("a@example.test").since == 10.0


def test_idleSinceOfTheShownResource():
    """
    The idle time shown is that of the shown resource.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.AWAY, resource="idle", idleSince=100.0))
    tracker.available("a@example.test", presence(State.CHAT, resource="active"))
    assert tracker.shown("a@example.test").idleSince is None
    tracker.unavailable("a@example.test", "active", None, 5.0)
    assert tracker.shown("a@example.test").idleSince == 100.0


def test_observersToldOfChangesThatShow():
    """
    Observers are told when what a user shows looks different, and not
    when a presence changes nothing that shows.
    """
    tracker = PresenceTracker()
    calls = observed(tracker)
    tracker.available("a@example.test", presence(State.AWAY, "Lunch", priority=1, resource="one"))
    tracker.available("a@example.test", presence(State.AWAY, "Lunch", priority=9, resource="one"))
    tracker.available("a@example.test", presence(State.XA, resource="two"))
    tracker.available("a@example.test", presence(State.DND, "Busy", resource="one"))
    tracker.unavailable("a@example.test", "two", None, 1.0)
    tracker.unavailable("a@example.test", "one", "Bye", 2.0)
    tracker.unavailable("a@example.test", None, "Bye", 3.0)
    assert calls == [
        ("a@example.test", State.AWAY, "Lunch"),
        ("a@example.test", State.XA, None),
        ("a@example.test", State.DND, "Busy"),
        ("a@example.test", State.OFFLINE, "Bye"),
    ]


def test_observersToldOfForgettingAndClearing():
    """
    Observers are told that forgotten users and the users online when
    presence is cleared are offline.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence())
    tracker.available("b@example.test", presence())
    tracker.unavailable("c@example.test", None, None, 1.0)
    calls = observed(tracker)
    tracker.forget("a@example.test")
    tracker.forget("nobody@example.test")
    tracker.clear()
    assert calls == [("a@example.test", State.OFFLINE, None), ("b@example.test", State.OFFLINE, None)]


def test_restoredOfflineUser():
    """
    A user restored as offline shows the status and last-seen time
    restored, until they come online; an online user is not restored.
    """
    tracker = PresenceTracker()
    tracker.available("b@example.test", presence())
    tracker.restore("a@example.test", "On holiday", 50.0)
    tracker.restore("b@example.test", "Old", 40.0)
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.lastSeen, shown.since) == (State.OFFLINE, "On holiday", 50.0, 50.0)
    assert tracker.shown("b@example.test").state is State.AVAILABLE
    tracker.available("a@example.test", presence(received=60.0))
    assert (tracker.shown("a@example.test").state, tracker.shown("a@example.test").lastSeen) == (
        State.AVAILABLE, None)


def test_offlineUsersAreThoseWithARecord():
    """
    offlineUsers lists the users seen going offline or restored so, with
    what they show; not online users, not forgotten ones.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="one"))
    tracker.unavailable("a@example.test", "one", "Bye", 5.0)
    tracker.restore("b@example.test", "On holiday", 50.0)
    tracker.restore("c@example.test", None, 60.0)
    tracker.available("d@example.test", presence())
    tracker.forget("c@example.test")
    assert sorted((user, shown.state, shown.status, shown.lastSeen) for user, shown in tracker.offlineUsers()) == [
        ("a@example.test", State.OFFLINE, "Bye", 5.0), ("b@example.test", State.OFFLINE, "On holiday", 50.0)]


def test_onlineCount():
    """
    onlineCount counts users with an online resource, not resources.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="one"))
    tracker.available("a@example.test", presence(resource="two"))
    tracker.available("b@example.test", presence(resource="one"))
    tracker.unavailable("c@example.test", None, "gone", 0.0)
    assert tracker.onlineCount() == 2


def test_resourcesPerUserCapped():
    """
    A user keeps at most 32 resources: a new one beyond them replaces the
    one updated least recently.
    """
    tracker = PresenceTracker()
    for number in range(32):
        tracker.available("a@example.test", presence(State.AWAY, received=number, resource=f"r{number}"))
    tracker.available("a@example.test", presence(State.CHAT, received=32, resource="r0"))
    tracker.available("a@example.test", presence(State.XA, received=33, resource="new"))
    resources = {resource for _, resource in tracker.onlineResources()}
    assert resources == {"new"} | {f"r{number}" for number in range(32)} - {"r1"}
    assert tracker.shown("a@example.test").state is State.CHAT


def test_stateFromShow():
    """
    The show values of RFC 6121 map to their states; none or anything else
    is plain available.
    """
    assert [stateFromShow(s) for s in ("chat", "away", "xa", "dnd", None, "bogus")] == [
        State.CHAT, State.AWAY, State.XA, State.DND, State.AVAILABLE, State.AVAILABLE,
    ]


def test_mostOnlineIsTheHighWaterMarkOfUsersOnline():
    """
    C{mostOnline} counts users, not resources, and stays at the most seen
    online at once while users leave, until it is set again.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="1"))
    tracker.available("a@example.test", presence(resource="2"))
    tracker.available("b@example.test", presence(resource="1"))
    tracker.unavailable("a@example.test", None, None, 1.0)
    tracker.available("c@example.test", presence(resource="1"))
    assert (tracker.mostOnline, tracker.onlineCount()) == (2, 2)
    tracker.clear()
    assert tracker.mostOnline == 2
    tracker.mostOnline = 0
    tracker.available("d@example.test", presence(resource="1"))
    assert tracker.mostOnline == 1
