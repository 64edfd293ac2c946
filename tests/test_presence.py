"""
Tests for L{presenced.presence}: the model and the rule that picks what a
user shows.
"""

from presenced.presence import OFFLINE, PresenceTracker, ResourcePresence, State, stateFromShow


def presence(state=State.AVAILABLE, status=None, priority=0, received=0.0, stanza=b"<presence/>", resource="r"):
    return ResourcePresence(state=state, status=status, priority=priority, received=received,
                            stanza=stanza, resource=resource)


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
    tracker.unavailable("a@example.test", "chat", "bye")
    assert tracker.shown("a@example.test").state is State.AWAY


def test_lastResourceLeavingKeepsStatus():
    """
    When the last resource goes offline with a status text, the user is
    offline with that text.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("a@example.test", "r", "Gone fishing")
    shown = tracker.shown("a@example.test")
    assert (shown.state, shown.status, shown.stanza) == (State.OFFLINE, "Gone fishing", None)


def test_lastResourceLeavingWithoutStatus():
    """
    When the last resource goes offline without a status text, the user
    is plainly offline.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("a@example.test", "r", None)
    assert tracker.shown("a@example.test") is OFFLINE


def test_laterUnavailableWithoutStatusDropsTheKeptStatus():
    """
    An offline user's kept status text goes when they send another
    unavailable presence without one.
    """
    tracker = PresenceTracker()
    tracker.unavailable("a@example.test", "r", "Gone fishing")
    tracker.unavailable("a@example.test", None, None)
    assert tracker.shown("a@example.test") is OFFLINE


def test_forgottenUserIsOfflineWithoutStatus():
    """
    A forgotten user is offline without a status, whether they were online
    or offline with a kept status text.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.unavailable("b@example.test", "r", "Gone fishing")
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
    tracker.unavailable("a@example.test", None, None)
    assert tracker.shown("a@example.test") is OFFLINE
    assert tracker.onlineCount() == 0


def test_unavailableForUnknownResource():
    """
    An unavailable presence for a resource that was not online leaves the
    others as they are.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(State.XA, resource="one"))
    tracker.unavailable("a@example.test", "ghost", "x")
    assert tracker.shown("a@example.test").state is State.XA


def test_clearForgetsEverything():
    """
    After clear, every user is offline, without kept status texts.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="r"))
    tracker.available("b@example.test", presence(resource="r"))
    tracker.unavailable("b@example.test", "r", "later")
    tracker.clear()
    assert tracker.shown("a@example.test") is OFFLINE
    assert tracker.shown("b@example.test") is OFFLINE


def test_onlineCount():
    """
    onlineCount counts users with an online resource, not resources.
    """
    tracker = PresenceTracker()
    tracker.available("a@example.test", presence(resource="one"))
    tracker.available("a@example.test", presence(resource="two"))
    tracker.available("b@example.test", presence(resource="one"))
    tracker.unavailable("c@example.test", None, "gone")
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
