"""
JIDs read from text that anyone may have written: settings and requests.

Twisted's parser reports a bad JID with L{InvalidFormat}, L{UnicodeError}
or L{IndexError} (an empty domain label), depending on the input; here
every failure is an L{InvalidJID}.  Stringprep is costly, so each part is
held to RFC 7622's limit of 1023 bytes before it is prepared, a caller
can leave out the parts it does not need, and the parts are prepared
with Twisted's profiles (and the standard library's nameprep) applied to
one character at a time, what they say of each character remembered:
the same results, about ten times faster on characters seen before.
"""

from __future__ import annotations

import stringprep
from encodings import idna
from functools import lru_cache, reduce
from operator import or_
from typing import Callable, Container, NamedTuple
from unicodedata import ucd_3_2_0

from twisted.words.protocols.jabber.xmpp_stringprep import Profile, nameprep, nodeprep, resourceprep

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


_PROHIBITED, _RANDAL, _L = 1, 2, 4


class _Rules(NamedTuple):
    """
    A stringprep profile as what it says of each character, remembered:
    Twisted's and the standard library's look every character up in a
    dozen tables, in Python, every time (about 3.5 us a character).

    @ivar map: one character to what it maps to (C{""}: nothing).
    @ivar verdict: one character, once normalised, to C{_PROHIBITED}
        (prohibited or unassigned), or to its bidirectional categories,
        C{_RANDAL} and C{_L} or'ed together.
    """

    map: Callable[[str], str]
    verdict: Callable[[str], int]


def _bidi(character: str) -> int:
    return (_RANDAL if stringprep.in_table_d1(character) else 0) | (_L if stringprep.in_table_d2(character) else 0)


def _profileRules(profile: Profile) -> _Rules:
    """
    The rules of one of Twisted's profiles (nodeprep, resourceprep).
    """
    lookups = tuple(table.lookup for table in profile.prohibiteds)
    if profile.do_check_unassigneds:
        lookups += (stringprep.in_table_a1,)

    def verdict(character: str) -> int:
        for lookup in lookups:
            if lookup(character):
                return _PROHIBITED
        return _bidi(character)

    return _Rules(lru_cache(maxsize=8192)(profile.map), lru_cache(maxsize=8192)(verdict))


def _labelMap(character: str) -> str:
    return "" if stringprep.in_table_b1(character) else stringprep.map_table_b2(character)


_LABEL_PROHIBITED = tuple(getattr(stringprep, f"in_table_{table}")
                          for table in ("c12", "c22", "c3", "c4", "c5", "c6", "c7", "c8", "c9"))
_STD3_PROHIBITED = frozenset(nameprep.prohibiteds)


def _labelVerdict(character: str) -> int:
    if character in _STD3_PROHIBITED:
        return _PROHIBITED
    for inTable in _LABEL_PROHIBITED:
        if inTable(character):
            return _PROHIBITED
    return _bidi(character)


#: The domain label rules: the standard library's nameprep (RFC 3491),
#: then Twisted's STD3 rule (letters, digits and hyphens only).
_LABEL = _Rules(lru_cache(maxsize=8192)(_labelMap), lru_cache(maxsize=8192)(_labelVerdict))
_NODE = _profileRules(nodeprep)
_RESOURCE = _profileRules(resourceprep)


def _stringprep(text: str, rules: _Rules, name: str) -> str:
    prepared = ucd_3_2_0.normalize("NFKC", "".join(map(rules.map, text)))
    verdicts = [rules.verdict(character) for character in prepared]
    found = reduce(or_, verdicts, 0)
    if found & _PROHIBITED or found & _RANDAL and (
            found & _L or not verdicts[0] & _RANDAL or not verdicts[-1] & _RANDAL):
        raise InvalidJID(f"Invalid character in {name}")
    return prepared


def _checked(prepared: str, name: str) -> str:
    if not prepared:
        raise InvalidJID(f"Empty {name}")
    _checkLength(prepared, name)
    return prepared


def prepareLocal(local: str) -> str:
    """
    C{local} through nodeprep.

    @raise InvalidJID: when it is not a valid local part.
    """
    return _checked(_stringprep(local, _NODE, "username"), "username")


def prepareDomain(domain: str) -> str:
    """
    C{domain} through nameprep, label by label, as Twisted does it (a
    final dot is kept).

    @raise InvalidJID: when it is not a valid domain.
    """
    labels = idna.dots.split(domain)
    final = "." if len(labels) > 1 and not labels[-1] else ""
    if final:
        del labels[-1]
    prepared = []
    for label in labels:
        label = _stringprep(label, _LABEL, "hostname")
        if not label:
            raise InvalidJID("Empty label in hostname")
        if label[0] == "-" or label[-1] == "-":
            raise InvalidJID("Invalid character in hostname")
        prepared.append(label)
    return _checked(".".join(prepared) + final, "hostname")


def prepareResource(resource: str) -> str:
    """
    C{resource} through resourceprep.

    @raise InvalidJID: when it is not a valid resource.
    """
    return _checked(_stringprep(resource, _RESOURCE, "resource"), "resource")


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
