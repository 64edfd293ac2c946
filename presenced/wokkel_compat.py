"""
The one place where wokkel is made to work with current Twisted, and
where its flaws are fixed.

wokkel 18.0.0 was written for Twisted releases that had
C{twisted.python.compat._PY3} and C{twisted.python.constants}.  Both are
gone: C{wokkel.data_form} (and so C{wokkel.disco}) imports the former,
C{wokkel.muc} the latter.  Importing this module first puts both back, and
keeps wokkel's use of deprecated C{twisted.python.compat} aliases from
flooding the log with warnings.  Every presenced module imports wokkel
only after this one.

L{ReplyCheckingStreamManager} is wokkel's stream manager without its
forgeable IQ replies; presenced's links are built on it.  L{rosterItems}
reads a roster without failing on a JID that Twisted's parser cannot read.
"""

from __future__ import annotations

import secrets
import sys
import warnings

import constantly
from twisted.internet import defer
from twisted.python import compat
from twisted.words.xish import domish

from presenced import jids

if not hasattr(compat, "_PY3"):
    compat._PY3 = True  # type: ignore[attr-defined]

sys.modules.setdefault("twisted.python.constants", constantly)

warnings.filterwarnings(
    "ignore",
    category=DeprecationWarning,
    message=r"twisted\.python\.compat\.",
)

from wokkel.subprotocols import StreamManager  # noqa: E402  (after the fixes above)
from wokkel.xmppim import NS_ROSTER, RosterItem  # noqa: E402


class ReplyCheckingStreamManager(StreamManager):
    """
    wokkel's stream manager, with IQ replies that cannot be forged.

    wokkel matches a reply to its request by C{id} alone, and domish gives
    out sequential ids (C{H_1}, C{H_2}, ...): anyone who saw one id could
    guess the next and answer a request sent to someone else, e.g. fail a
    ping to another user's resource.  Here every request gets an id of
    144 random bits, and a reply is taken only if its C{from} is the
    request's C{to}, compared as they are: the server stamps every
    sender's address (RFC 6120, 8.1.2.1), and answers for an entity from
    the address it was asked.  As RFC 6120 says (10.3, 8.1.2.1), a request
    without C{to} goes to the account's bare JID, and a reply without
    C{from} comes from it.  Other replies are ignored, and the request
    still waits for its own.
    """

    def __init__(self, factory, reactor=None) -> None:
        StreamManager.__init__(self, factory, reactor)
        self._recipients: dict[str, str | None] = {}

    def request(self, request) -> defer.Deferred:
        """
        Send an IQ request with an unguessable id, and track its reply.
        """
        if not request.stanzaID:
            request.stanzaID = secrets.token_urlsafe(18)
        stanzaID = request.stanzaID
        self._recipients[stanzaID] = request.recipient.full() if request.recipient is not None else None
        d = super().request(request)
        d.addBoth(self._forget, stanzaID)
        return d

    def _forget(self, result, stanzaID: str):
        self._recipients.pop(stanzaID, None)
        return result

    def _onIQResponse(self, iq: domish.Element) -> None:
        stanzaID = iq.getAttribute("id")
        if stanzaID not in self._recipients:
            return
        sender, recipient = iq.getAttribute("from"), self._recipients[stanzaID]
        if sender is None or recipient is None:
            account = self._accountAddress()
            sender, recipient = sender or account, recipient or account
        if sender == recipient:
            super()._onIQResponse(iq)

    def _accountAddress(self) -> str | None:
        xs = self.xmlstream
        account = getattr(xs.authenticator, "jid", None) or xs.thisEntity
        return account.userhost() if account is not None else None


def rosterItem(element: domish.Element) -> RosterItem:
    """
    The roster item C{element} holds, as wokkel reads it, its C{jid} read
    by L{presenced.jids} first: wokkel reads it with Twisted's parser,
    which fails on some (C{a@b..c}) with C{IndexError}.

    @raise jids.InvalidJID: when the item has no C{jid}, or it is not a JID.
    """
    jids.parse(element.getAttribute("jid") or "")
    return RosterItem.fromElement(element)


def rosterItems(query: domish.Element | None) -> list[RosterItem]:
    """
    The items of a roster C{query}, those without a valid JID left out.
    """
    items = []
    for element in () if query is None else query.elements(NS_ROSTER, "item"):
        try:
            items.append(rosterItem(element))
        except jids.InvalidJID:
            continue
    return items
