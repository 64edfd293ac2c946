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
forgeable IQ replies; presenced's links are built on it.
"""

from __future__ import annotations

import secrets
import sys
import warnings

import constantly
from twisted.internet import defer
from twisted.python import compat
from twisted.words.xish import domish

if not hasattr(compat, "_PY3"):
    compat._PY3 = True  # type: ignore[attr-defined]

sys.modules.setdefault("twisted.python.constants", constantly)

warnings.filterwarnings(
    "ignore",
    category=DeprecationWarning,
    message=r"twisted\.python\.compat\.",
)

from wokkel.subprotocols import StreamManager  # noqa: E402  (after the fixes above)


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
