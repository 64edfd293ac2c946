"""
Client mode: presenced logs in as an ordinary account, and serves the
presence of the users who added it as a contact.

Consent is the roster: a user who wants their presence published asks for
the account's presence (adds it to their roster); presenced approves users
of the allowed domains and asks for theirs in return.  It serves exactly
the contacts whose presence it receives (subscription C{to} or C{both}),
and tracks the presence of no one else.
"""

from __future__ import annotations

from presenced.wokkel_compat import rosterItem, rosterItems  # (must precede wokkel)

from pathlib import Path
from typing import Container

import scramp
from cryptography.hazmat.primitives.serialization import Encoding

from twisted.internet import defer, ssl
from twisted.internet.interfaces import IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.names.srvconnect import SRVConnector
from twisted.words.protocols.jabber import client, sasl, sasl_mechanisms, xmlstream
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from wokkel.xmppim import (NS_ROSTER, XPATH_ROSTER_SET, PresenceClientProtocol, RosterClientProtocol, RosterItem,
                           RosterRequest)
from zope.interface import implementer

from presenced.config import ClientSettings, Settings, caCertificates
from presenced.jids import InvalidJID
from presenced.presence import PresenceTracker
from presenced.ratelimit import Limits, RateLimitedLog
from presenced.link import LinkMonitor, LinkService


@implementer(sasl_mechanisms.ISASLMechanism)
class Scram:
    """
    The SCRAM SASL mechanisms (RFC 5802, RFC 7677), through scramp; the
    server's final message is verified, so the server proves it knows the
    password too.
    """

    def __init__(self, name: str, user: str, password: str) -> None:
        self.name = name
        self._client = scramp.ScramClient([name], user, password)

    def getInitialResponse(self) -> bytes:
        return self._client.get_client_first().encode("utf-8")

    def getResponse(self, challenge: bytes) -> bytes:
        self._client.set_server_first(challenge.decode("utf-8"))
        return self._client.get_client_final().encode("utf-8")

    def verify(self, final: bytes) -> None:
        """
        Check the server's final message.

        @raise scramp.ScramException: if the server's signature is wrong.
        """
        self._client.set_server_final(final.decode("utf-8"))


class _SafeSASLInitializer(sasl.SASLInitiatingInitializer):
    """
    SASL with the strongest mechanism offered: SCRAM-SHA-256, then
    SCRAM-SHA-1; else PLAIN, which sends the password as it is, only
    inside TLS or when TLS is switched off for a loopback server.  Never
    DIGEST-MD5, which RFC 6331 retired.
    """

    def setMechanism(self) -> None:
        authenticator = self.xmlstream.authenticator
        offered = sasl.get_mechanisms(self.xmlstream)
        encrypted = ISSLTransport.providedBy(self.xmlstream.transport)
        for name in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
            if name in offered:
                self.mechanism = Scram(name, authenticator.jid.user, authenticator.password)
                return
        if "PLAIN" in offered and (encrypted or authenticator.tls == "off"):
            self.mechanism = sasl_mechanisms.Plain(None, authenticator.jid.user, authenticator.password)
        else:
            raise sasl.SASLNoAcceptableMechanism()

    def onSuccess(self, success) -> None:
        if isinstance(self.mechanism, Scram):
            try:
                self.mechanism.verify(sasl.fromBase64(str(success)))
            except (scramp.ScramException, sasl.SASLIncorrectEncodingError) as e:
                self._deferred.errback(sasl.SASLAuthError(f"the server did not prove the password: {e}"))
                return
        super().onSuccess(success)


class AccountAuthenticator(client.XMPPAuthenticator):
    """
    Logs the account in: STARTTLS as configured, verifying the server's
    certificate for its domain, then SASL, resource binding and session.

    @ivar tls: C{"required"}, C{"direct"} (the connection is TLS already),
        C{"optional"} or C{"off"}.
    @ivar caFile: a PEM bundle of CA certificates, all of them trusted
        instead of the system's.
    """

    def __init__(self, jid: JID, password: str, tls: str, caFile: Path | None) -> None:
        super().__init__(jid, password)
        self.tls = tls
        self.caFile = caFile

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        initializers = [client.CheckVersionInitializer(xs)]
        if self.tls in ("required", "optional"):
            initializers.append(xmlstream.TLSInitiatingInitializer(
                xs, required=self.tls == "required", configurationForTLS=self.tlsOptions()))
        initializers += [
            _SafeSASLInitializer(xs, required=True),
            client.BindInitializer(xs, required=True),
            client.SessionInitializer(xs, required=False),
        ]
        xs.initializers = initializers

    def tlsOptions(self):
        """
        TLS client options that verify the server's certificate for the
        account's domain, against every certificate of C{caFile} or the
        system's CAs.
        """
        trust = None
        if self.caFile:
            trust = ssl.trustRootFromCertificates([
                ssl.Certificate.loadPEM(certificate.public_bytes(Encoding.PEM))
                for certificate in caCertificates(self.caFile)])
        return ssl.optionsForClientTLS(self.jid.host, trustRoot=trust)


class ClientConnection(LinkService):
    """
    The account's link to its server.  Without a configured host, the
    domain's SRV records say where to connect: C{_xmpp-client._tcp}, or
    C{_xmpps-client._tcp} for direct TLS (XEP-0368).
    """

    @staticmethod
    def authenticatorFor(settings: ClientSettings) -> AccountAuthenticator:
        return AccountAuthenticator(JID(settings.jid), settings.secret, settings.tls, settings.ca_file)

    @property
    def jid(self) -> JID:
        """
        The account's JID (wokkel checks roster pushes against it).
        """
        return JID(self.settings.jid)

    def _connect(self):
        settings = self.settings
        direct = settings.tls == "direct"
        if settings.host is not None:
            if not direct:
                return super()._connect()
            return self._reactor.connectSSL(settings.host, settings.port, self.factory,
                                            self.factory.authenticator.tlsOptions(),
                                            timeout=self.factory.handshakeTimeout)
        connector = SRVConnector(
            self._reactor, "xmpps-client" if direct else "xmpp-client", JID(settings.jid).host, self.factory,
            defaultPort=settings.port,
            connectFuncName="connectSSL" if direct else "connectTCP",
            connectFuncArgs=(self.factory.authenticator.tlsOptions(),) if direct else (),
        )
        connector.connect()
        return connector


class ContactRoster(RosterClientProtocol):
    """
    The account's roster, as far as consent goes: the contacts of allowed
    domains whose presence the account receives.  Kept while the link is
    down (consent does not lapse with it) and read again on every login.
    A contact who no longer shares their presence is forgotten by the
    presence model.  The roster holds at most C{maxContacts} entries with
    a subscription, either way or asked for.

    @ivar contacts: their bare JIDs.
    @ivar members: the bare JIDs of the roster entries with a subscription
        either way, or one asked for.
    """

    iqHandlers = {XPATH_ROSTER_SET: "onRosterPush"}

    def __init__(self, scope: Container[str], tracker: PresenceTracker, maxContacts: int) -> None:
        super().__init__()
        self.scope = scope
        self.tracker = tracker
        self.maxContacts = maxContacts
        self.contacts: set[str] = set()
        self.members: set[str] = set()

    def load(self, roster) -> None:
        """
        Take the contacts from a fetched roster.
        """
        before, self.contacts, self.members = self.contacts, set(), set()
        for item in roster.values():
            self._update(item)
        for user in before - self.contacts:
            self.tracker.forget(user)

    def _update(self, item: RosterItem) -> None:
        entity, user = item.entity, item.entity.userhost()
        if item.subscriptionTo or item.subscriptionFrom or item.pendingOut:
            self.members.add(user)
        else:
            self.members.discard(user)
        if item.subscriptionTo and entity.user is not None and entity.host in self.scope:
            self.contacts.add(user)
        else:
            self._drop(user)

    def _drop(self, user: str) -> None:
        if user in self.contacts:
            self.contacts.discard(user)
            self.tracker.forget(user)

    def onRosterPush(self, iq):
        """
        Take a roster push, only from the account itself (RFC 6121,
        2.1.6).  Anyone else's is refused before it is read, and a push
        that cannot be read (not exactly one item, or one without a valid
        JID) is refused too, so that neither is logged.
        """
        sender = iq.getAttribute("from")
        if sender is not None and sender.partition("/")[0] != self.parent.jid.userhost():
            raise StanzaError("service-unavailable")
        items = list(iq.query.elements(NS_ROSTER, "item"))
        try:
            if len(items) == 1:
                rosterItem(items[0])
                return self._onRosterSet(iq)
        except InvalidJID:
            pass
        raise StanzaError("bad-request")

    def getRoster(self) -> defer.Deferred[dict[JID, RosterItem]]:
        """
        The account's roster: its items by JID, those without a valid JID
        left out.
        """
        return self.request(RosterRequest(stanzaType="get")).addCallback(
            lambda iq: {item.entity: item for item in rosterItems(iq.query)})

    def setReceived(self, request) -> None:
        self._update(request.item)

    def removeReceived(self, request) -> None:
        self.members.discard(request.item.entity.userhost())
        self._drop(request.item.entity.userhost())

    def admit(self, user: str) -> bool:
        """
        Make room in the roster for C{user}, about to be approved, if there
        is room (or they are in it already).

        @return: whether there was.
        """
        if user not in self.members and len(self.members) >= self.maxContacts:
            return False
        self.members.add(user)
        return True

    def isContact(self, user: str) -> bool:
        """
        Whether C{user} (a normalised bare JID) shares their presence with
        the account: the only users whose presence is tracked and shown.
        """
        return user in self.contacts

    def mayView(self, user: str, requester: str | None, client: str | None = None) -> bool:
        """
        Whether C{user}'s presence may be shown: they shared it.
        """
        return self.isContact(user)


class ConsentKeeper(PresenceClientProtocol):
    """
    Answers subscription requests: users of the allowed domains are
    approved and asked for their presence in return while the roster has
    room for them; others are refused.
    Once the roster is read, sends the account's initial presence, which
    makes the server send the contacts' presence.  Anyone may send
    requests, so each kind of answer is logged at most once a minute.
    """

    log = Logger()

    def __init__(self, roster: ContactRoster, clock: IReactorTime, limits: Limits | None = None) -> None:
        super().__init__()
        self.roster = roster
        self.requests = RateLimitedLog(self.log, clock)
        self.limits = limits

    def connectionInitialized(self) -> None:
        super().connectionInitialized()
        self.roster.getRoster().addCallbacks(self.roster.load, self._rosterFailed).addBoth(
            lambda _: self.available(priority=-1))

    def _rosterFailed(self, reason) -> None:
        self.log.error("Could not read the account's roster: {why}", why=reason.getErrorMessage())

    def subscribeReceived(self, entity: JID) -> None:
        if entity.user is None or entity.host not in self.roster.scope:
            self.requests.info("Refusing a subscription request from {user}: not an allowed domain",
                               user=entity.full())
            self.unsubscribed(entity)
        elif not self.roster.admit(entity.userhost()):
            if self.limits is not None:
                self.limits.count("max_contacts")
            self.requests.warn("Refusing a subscription request from {user}: the roster is full "
                               "([xmpp] max_contacts = {limit})", user=entity.userhost(),
                               limit=self.roster.maxContacts)
            self.unsubscribed(entity)
        else:
            self.requests.info("{user} shares their presence with the account", user=entity.userhost())
            self.subscribed(entity)
            self.subscribe(entity.userhostJID())

    def unsubscribeReceived(self, entity: JID) -> None:
        self.unsubscribed(entity)
        self.unsubscribe(entity.userhostJID())


class ClientMode:
    """
    The XMPP side as an ordinary account: users consent by adding it, and
    those are served.

    @ivar handlers: what the link needs besides the presence feed.
    @ivar policy: who may be seen: the consenting contacts.
    @ivar tracks: whose presence the feed tracks: the consenting contacts'.
    """

    def __init__(self, settings: Settings, reactor, tracker: PresenceTracker, link: LinkMonitor,
                 scope: Container[str], limits: Limits | None = None) -> None:
        self.connection = ClientConnection(reactor, settings.xmpp)
        self.contacts = ContactRoster(scope, tracker, settings.xmpp.max_contacts)
        self.handlers = [self.contacts, ConsentKeeper(self.contacts, reactor, limits)]
        self.policy = self.contacts
        self.tracks = self.contacts.isContact

    def reconfig(self, settings: Settings) -> None:
        """
        Use new settings from now on (a changed link is reconnected apart).
        """
        self.contacts.maxContacts = settings.xmpp.max_contacts
