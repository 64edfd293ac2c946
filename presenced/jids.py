"""
JIDs read from text that anyone may have written: settings and requests.

Twisted's parser reports a bad JID with L{InvalidFormat}, L{UnicodeError}
or L{IndexError} (an empty domain label), depending on the input; here
every failure is an L{InvalidJID}.  Stringprep is costly, so each part is
held to RFC 7622's limit of 1023 bytes before it is prepared, and a
caller can leave out the parts it does not need.
"""

from __future__ import annotations

from typing import Container, NamedTuple

from twisted.words.protocols.jabber.xmpp_stringprep import nameprep, nodeprep, resourceprep
#: The longest local part, domain or resource, in UTF-8 bytes (RFC 7622).
MAX_PART = 1023


class InvalidJID(ValueError):
    """
    A text is not a JID; the message says why.
    """


class JIDParts(NamedTuple):
    """
    A JID's local part, domain and resource.

    @ivar local: C{None} for a domain (or a domain with a resource).
    @ivar resource: C{None} for a bare JID.
    """

    local: str | None
    domain: str
    resource: str | None

    @property
    def bare(self) -> str:
        """
        C{local@domain}, or the domain alone.
        """
        return self.domain if self.local is None else f"{self.local}@{self.domain}"

    @property
    def full(self) -> str:
        """
        The whole JID, with its resource if it has one.
        """
        return self.bare if self.resource is None else f"{self.bare}/{self.resource}"


def split(text: str) -> JIDParts:
    """
    The parts of C{text} as written, not prepared, as Twisted splits them:
    the first C{/} starts the resource, an C{@} before it ends the local
    part.  Empty local parts and resources are left out.

    @raise InvalidJID: when the domain is empty or a part is too long.
    """
    bare, _, resource = text.partition("/")
    local, at, domain = bare.partition("@")
    if not at:
        local, domain = "", bare
    if not domain:
        raise InvalidJID("Server address required.")
    parts = JIDParts(local or None, domain, resource or None)
    for part, name in zip(parts, _PART_NAMES):
        _checkLength(part, name)
    return parts


_PART_NAMES = ("username", "hostname", "resource")


def _checkLength(part: str | None, name: str) -> None:
    if part is not None and len(part.encode("utf-8", "surrogatepass")) > MAX_PART:
        raise InvalidJID(f"The {name} is longer than {MAX_PART} bytes")


def _prepare(profile, part: str, name: str) -> str:
    try:
        prepared = profile.prepare(part)
    except IndexError:
        raise InvalidJID(f"Empty label in {name}") from None
    except UnicodeError:
        raise InvalidJID(f"Invalid character in {name}") from None
    if not prepared:
        raise InvalidJID(f"Empty {name}")
    _checkLength(prepared, name)
    return prepared


def prepareLocal(local: str) -> str:
    """
    C{local} through nodeprep.

    @raise InvalidJID: when it is not a valid local part.
    """
    return _prepare(nodeprep, local, "username")


def prepareDomain(domain: str) -> str:
    """
    C{domain} through nameprep.

    @raise InvalidJID: when it is not a valid domain.
    """
    return _prepare(nameprep, domain, "hostname")


def prepareResource(resource: str) -> str:
    """
    C{resource} through resourceprep.

    @raise InvalidJID: when it is not a valid resource.
    """
    return _prepare(resourceprep, resource, "resource")


def parse(text: str) -> JIDParts:
    """
    The normalised parts of the JID in C{text}.

    @raise InvalidJID: when C{text} is not a JID.
    """
    local, domain, resource = split(text)
    return JIDParts(
        None if local is None else prepareLocal(local),
        prepareDomain(domain),
        None if resource is None else prepareResource(resource),
    )


def parseBare(text: str, localOn: Container[str] | None = None) -> JIDParts:
    """
    The normalised bare JID in C{text}: its resource is left out without
    being prepared.

    @param localOn: when given, the local part is prepared only on these
        domains (the domain is prepared and looked up first) and is left
        as written on any other.
    @raise InvalidJID: when C{text} is not a JID.
    """
    local, domain, _ = split(text)
    domain = prepareDomain(domain)
    if local is not None and (localOn is None or domain in localOn):
        local = prepareLocal(local)
    return JIDParts(local, domain, None)
