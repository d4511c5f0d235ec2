"""Consistency checks of a loaded configuration (inventory §2.2–§2.4, §3).

Owns the answer to "what did the user get wrong": starting from the roots
(``[General]``, ``[Phase 1]``, ``[Phase 2]``) it follows every reference
(ISAKMP-peer → ISAKMP-configuration → ISAKMP-transform → Lifetime; connection →
IPsec-configuration → suite → protocol → transform; ID sections) and reports, as
:class:`~isakmpd.config.parser.Diagnostic` objects naming file, line, section
and tag and saying what to change:

* a referenced section that does not exist (with a "did you mean" when a name is
  close), a required tag that is missing, an unknown tag (warning);
* a bad number or offer/accept range, an unknown or unsupported algorithm, group,
  ID type, exchange type or protocol (unsupported ones — DES, IDEA, DSS, RSA
  encryption, EC2N groups, custom groups, PRF — are errors saying so);
* a bad address (numeric only; in IPsec-ID address fields an interface name or
  ``default`` is accepted but not resolved here), Port without Protocol, Phase 2
  transforms with different PFS groups in one offer, and similar.

A value coming from the generated defaults is reported at the user's line that
referred to it. Sections with an error are listed in
:attr:`Validation.broken_sections`, together with every section that refers to
one (a connection whose transform is broken is unusable); the others can be used.
Nothing here raises on bad input.  Pure: no I/O, no name resolution.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from isakmpd.config.defaults import generated_section_names
from isakmpd.config.parser import Diagnostic, Severity
from isakmpd.config.store import Binding, OriginKind, Store
from isakmpd.config.values import is_any, parse_int, parse_offer, split_list
from isakmpd.wire.constants import (
    AhTransform,
    AuthAlgorithm,
    AuthMethod,
    Doi,
    EncapsulationMode,
    EncryptionAlgorithm,
    EspTransform,
    ExchangeType,
    GroupDescription,
    HashAlgorithm,
    IdType,
    IpcompTransform,
    LifeType,
    Named,
    ProtocolId,
)

__all__ = ["Validation", "validate"]

ERROR = Severity.ERROR
WARNING = Severity.WARNING

SUPPORTED_ENCRYPTION = frozenset({EncryptionAlgorithm.BLOWFISH_CBC,
                                  EncryptionAlgorithm.TRIPLE_DES_CBC,
                                  EncryptionAlgorithm.CAST_CBC, EncryptionAlgorithm.AES_CBC})
# Allowed KEY_LENGTH (bits) per phase 1 cipher (inventory §3.1); None: not used.
MM_KEY_BITS: dict[EncryptionAlgorithm, tuple[int, int] | None] = {
    EncryptionAlgorithm.BLOWFISH_CBC: (96, 448),
    EncryptionAlgorithm.TRIPLE_DES_CBC: None,
    EncryptionAlgorithm.CAST_CBC: (96, 128),
    EncryptionAlgorithm.AES_CBC: (128, 256),
}
SUPPORTED_HASHES = frozenset({HashAlgorithm.MD5, HashAlgorithm.SHA, HashAlgorithm.SHA2_256,
                              HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512})
SUPPORTED_AUTH = frozenset({AuthMethod.PRE_SHARED, AuthMethod.RSA_SIG})
SUPPORTED_GROUPS = frozenset(GroupDescription(number) for number in
                             (1, 2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 26, 27, 28, 29, 30))
SUPPORTED_ESP = frozenset({EspTransform.TRIPLE_DES, EspTransform.CAST, EspTransform.BLOWFISH,
                           EspTransform.NULL, EspTransform.AES, EspTransform.AES_CTR,
                           EspTransform.AES_GCM_16, EspTransform.AES_GMAC})
AEAD_ESP = frozenset({EspTransform.AES_GCM_16, EspTransform.AES_GMAC})
SUPPORTED_AH = frozenset({AhTransform.MD5, AhTransform.SHA, AhTransform.SHA2_256,
                          AhTransform.SHA2_384, AhTransform.SHA2_512, AhTransform.RIPEMD})
SUPPORTED_IPCOMP = frozenset({IpcompTransform.DEFLATE, IpcompTransform.LZS})
SUPPORTED_AUTH_ALG = frozenset(set(AuthAlgorithm) - {AuthAlgorithm.DES_MAC, AuthAlgorithm.KPDK})
SUPPORTED_ENCAP = frozenset(EncapsulationMode)
PHASE_1_ID_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR,
                              IdType.IPV6_ADDR_SUBNET, IdType.FQDN, IdType.USER_FQDN,
                              IdType.KEY_ID})
IPSEC_ID_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.IPV4_ADDR_SUBNET,
                            IdType.IPV6_ADDR_SUBNET})

KNOWN_TAGS: dict[str, frozenset[str]] = {
    kind: frozenset(tag.lower() for tag in tags) for kind, tags in {
        "General": ("Acquire-Only", "Check-interval", "Default-phase-1-ID",
                    "Default-phase-1-lifetime", "Default-phase-2-lifetime",
                    "Default-phase-2-suites", "Delete-SAs", "DPD-check-interval",
                    "Exchange-max-time", "Listen-on", "Loglevel", "Logverbose",
                    "NAT-T-Keepalive", "Policy-file", "Pubkey-directory",
                    "Renegotiate-on-HUP", "Retransmits", "Shared-SADB", "Use-Keynote"),
        "ISAKMP-peer": ("Phase", "Transport", "Address", "Port", "Local-address",
                        "Configuration", "Authentication", "ID", "Remote-ID", "Flags"),
        "ISAKMP-configuration": ("DOI", "EXCHANGE_TYPE", "Transforms"),
        "ISAKMP-transform": ("ENCRYPTION_ALGORITHM", "HASH_ALGORITHM",
                             "AUTHENTICATION_METHOD", "GROUP_DESCRIPTION", "GROUP_TYPE",
                             "KEY_LENGTH", "Life", "PRF", "FIELD_SIZE", "GROUP_ORDER",
                             "GROUP_PRIME", "GROUP_GENERATOR_ONE", "GROUP_GENERATOR_TWO",
                             "GROUP_CURVE_A", "GROUP_CURVE_B"),
        "Lifetime": ("LIFE_TYPE", "LIFE_DURATION"),
        "Phase1-ID": ("ID-type", "Address", "Network", "Netmask", "Name"),
        "IPsec-connection": ("Phase", "ISAKMP-peer", "Configuration", "Local-ID",
                             "Remote-ID", "Flags", "PF-Tag", "NAT-ID", "Interface",
                             "Acquire-ID", "Refcount", "Credentials", "Credential_Type",
                             "PKAuthentication"),
        "IPsec-configuration": ("DOI", "EXCHANGE_TYPE", "Suites"),
        "IPsec-suite": ("Protocols",),
        "IPsec-protocol": ("PROTOCOL_ID", "ReplayWindow", "Transforms"),
        "IPsec-transform": ("TRANSFORM_ID", "ENCAPSULATION_MODE", "AUTHENTICATION_ALGORITHM",
                            "GROUP_DESCRIPTION", "KEY_LENGTH", "KEY_ROUNDS",
                            "COMPRESS_DICTIONARY_SIZE", "COMPRESS_PRIVATE_ALGORITHM",
                            "ECN_TUNNEL", "Life"),
        "IPsec-ID": ("ID-type", "Address", "Network", "Netmask", "Protocol", "Port"),
    }.items()
}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+-]*")
_IFNAME_FORBIDDEN = re.compile(r"[\s/]")
_HEXISH = re.compile(r"[0-9A-Fa-f:.%]+")


@dataclass(frozen=True)
class Validation:
    """The outcome of :func:`validate`."""

    diagnostics: tuple[Diagnostic, ...]
    broken_sections: frozenset[str]   # lower-cased names

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is WARNING]

    def usable(self, section: str) -> bool:
        """Whether ``section`` and everything it refers to checked without error."""
        return section.lower() not in self.broken_sections


def validate(store: Store) -> Validation:
    """Check every section reachable from the roots of ``store``."""
    checker = _Checker(store)
    checker.run()
    return Validation(tuple(checker.diagnostics), frozenset(checker.broken))


def _describe_names(names: Iterable[Named]) -> str:
    return ", ".join(sorted(member.label for member in names))


class _Checker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[tuple[object, ...]] = set()
        self.broken: set[str] = set()
        self._memo: dict[tuple[str, str, str], bool] = {}
        self._groups: dict[str, set[str | None]] = {}

    # -- reporting -----------------------------------------------------------

    def report(self, severity: Severity, section: str, tag: str | None, message: str,
               ref: Binding | None = None) -> None:
        """Report about ``[section]:tag``, located at the value's line if it has one."""
        name = self.store.section_name(section) or section
        bound = self.store.binding(section, tag) if tag is not None else None
        file = line = None
        origin = bound.origin if bound is not None else self.store.section_origin(section)
        if origin is not None and origin.kind is OriginKind.FILE:
            file, line = origin.file, origin.line
        elif origin is not None and origin.kind is OriginKind.DEFAULT and ref is not None:
            message = (f"[{name}] is a generated section, used by [{ref.section}]:{ref.tag}: "
                       f"{message}")
            if ref.origin.kind is OriginKind.FILE:
                file, line = ref.origin.file, ref.origin.line
        elif origin is not None and origin.kind is OriginKind.FIFO:
            message += " (value set through the FIFO)"
        elif ref is not None and ref.origin.kind is OriginKind.FILE:
            file, line = ref.origin.file, ref.origin.line
        key = (file, line, name, tag, message, severity)
        if key in self._seen:
            return
        self._seen.add(key)
        self.diagnostics.append(Diagnostic(file, line, name, tag, message, severity))
        if severity is ERROR:
            self.broken.add(section.lower())

    @staticmethod
    def _carry(bound: Binding, ref: Binding | None) -> Binding | None:
        """The binding to locate messages about what ``bound`` refers to."""
        return ref if bound.origin.kind is OriginKind.DEFAULT and ref is not None else bound

    # -- small checks ----------------------------------------------------------

    def unknown_tags(self, section: str, kind: str, ref: Binding | None) -> None:
        known = KNOWN_TAGS[kind]
        for bound in self.store.tags(section):
            if bound.tag.lower() in known:
                continue
            spelled = {tag.lower(): tag for tag in KNOWN_TAGS[kind]}
            close = difflib.get_close_matches(bound.tag.lower(), list(spelled), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.report(WARNING, section, bound.tag,
                        f"unknown tag {bound.tag!r} for a {kind} section is ignored{hint}",
                        ref)

    def require(self, section: str, tag: str, why: str, ref: Binding | None,
                severity: Severity = ERROR) -> Binding | None:
        bound = self.store.binding(section, tag)
        if bound is None:
            self.report(severity, section, None,
                        f"required tag {tag} is missing ({why}); add {tag}=... to "
                        f"[{self.store.section_name(section) or section}]", ref)
        return bound

    def enum(self, section: str, tag: str, kind: type[Named], supported: frozenset,
             ref: Binding | None, *, allow_any: bool = False,
             required: str | None = None) -> Named | None:
        """Check an algorithm/constant name; return the member when it is usable."""
        bound = (self.require(section, tag, required, ref) if required
                 else self.store.binding(section, tag))
        if bound is None:
            return None
        if allow_any and is_any(bound.value):
            return None
        try:
            member = kind.from_label(bound.value)
        except KeyError:
            extra = " or ANY" if allow_any else ""
            self.report(ERROR, section, tag,
                        f"unknown {tag} {bound.value!r}; use one of "
                        f"{_describe_names(supported)}{extra}", ref)
            return None
        if member not in supported:
            self.report(ERROR, section, tag,
                        f"{tag} {member.label} is not supported; use one of "
                        f"{_describe_names(supported)}", ref)
            return None
        return member

    def number(self, section: str, tag: str, low: int, high: int,
               ref: Binding | None) -> int | None:
        bound = self.store.binding(section, tag)
        if bound is None:
            return None
        value = parse_int(bound.value)
        if value is None or not low <= value <= high:
            self.report(ERROR, section, tag,
                        f"{tag}={bound.value!r} is not a whole number from {low} to {high}; "
                        "write just the number", ref)
            return None
        return value

    def offer(self, section: str, tag: str, ref: Binding | None, *,
              allow_any: bool = True) -> tuple[int, int, int] | None:
        bound = self.store.binding(section, tag)
        if bound is None or (allow_any and is_any(bound.value)):
            return None
        try:
            parsed = parse_offer(bound.value)
        except ValueError as reason:
            self.report(ERROR, section, tag, f"bad {tag}: {reason}", ref)
            return None
        if not parsed.matches(parsed.value):
            self.report(ERROR, section, tag,
                        f"{tag}={bound.value}: the offered value {parsed.value} is outside "
                        f"the accepted range {parsed.low}..{parsed.high}", ref)
        return parsed.value, parsed.low, parsed.high

    def listed(self, section: str, tag: str, ref: Binding | None) -> list[str]:
        bound = self.store.binding(section, tag)
        if bound is None:
            return []
        items, empty = split_list(bound.value)
        if empty:
            self.report(WARNING, section, tag,
                        f"{tag} has {empty} empty list element(s), which are skipped; remove "
                        "the extra commas", ref)
        return items

    def target(self, section: str, tag: str, name: str, what: str,
               ref: Binding | None) -> bool:
        """Report when the section ``name`` referred to by ``[section]:tag`` is missing."""
        if self.store.has(name):
            return True
        header = self.store.section_origin(name)
        if header is not None and header.kind is OriginKind.FILE:
            self.report(ERROR, section, tag,
                        f"{what} section [{name}] (line {header.line}) has no tags; fill it "
                        "in or refer to another section", ref)
            return False
        hint = self._suggest(name)
        self.report(ERROR, section, tag,
                    f"{tag} refers to {what} section [{name}], which does not exist (and is "
                    f"not a generated name); add a [{name}] section or fix the name{hint}",
                    ref)
        return False

    def _suggest(self, name: str) -> str:
        """``; did you mean [X]?`` for the closest existing or generated section name."""
        spelled = {section.lower(): section for section in self.store.get_section_names()}
        candidates = set(spelled) | generated_section_names()
        close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.75)
        if not close:
            return ""
        return f"; did you mean [{spelled.get(close[0], close[0].upper())}]?"

    def address(self, section: str, tag: str, ref: Binding | None, *,
                family: int | None = None, interface_ok: bool = False,
                text: str | None = None) -> bool:
        bound = self.store.binding(section, tag)
        if bound is None and text is None:
            return True
        value = (text if text is not None else bound.value if bound else "").strip()
        if interface_ok and value == "default":
            return True
        try:
            parsed = ipaddress.ip_address(value)
        except ValueError:
            if interface_ok and _looks_like_interface(value):
                return True
            also = ", an interface name or 'default'" if interface_ok else ""
            self.report(ERROR, section, tag,
                        f"{value!r} is not a numeric IP address{also}; isakmpd does not "
                        "resolve host names, write the address (e.g. 192.0.2.1 or "
                        "2001:db8::1)", ref)
            return False
        if family is not None and parsed.version != family:
            self.report(ERROR, section, tag,
                        f"{value!r} is an IPv{parsed.version} address but the ID-type needs "
                        f"IPv{family}", ref)
            return False
        return True

    # -- roots -------------------------------------------------------------------

    def run(self) -> None:
        self.general()
        self.phase_1_root()
        self.phase_2_root()

    def general(self) -> None:
        section = "General"
        if not self.store.has(section):
            return
        self.unknown_tags(section, "General", None)
        for tag in ("Check-interval", "DPD-check-interval", "Exchange-max-time",
                    "NAT-T-Keepalive", "Retransmits"):
            self.number(section, tag, 0, 2**31 - 1, None)
        for tag in ("Default-phase-1-lifetime", "Default-phase-2-lifetime"):
            self.offer(section, tag, None, allow_any=False)
        bound = self.store.binding(section, "Default-phase-1-ID")
        if bound is not None and self.target(section, bound.tag, bound.value.strip(),
                                             "Phase1-ID", None):
            self.phase_1_id(bound.value.strip(), bound)
        bound = self.store.binding(section, "Default-phase-2-suites")
        if bound is not None:
            for suite in self.listed(section, bound.tag, None):
                if self.target(section, bound.tag, suite, "IPsec-suite", None):
                    self.suite(suite, bound)
        for address in self.listed(section, "Listen-on", None):
            self.address(section, "Listen-on", None, text=address)
        for item in self.listed(section, "Loglevel", None):
            cls, _, level = item.partition("=")
            cls = cls.strip()
            number = parse_int(cls)
            ok_class = cls == "A" or (number is not None and number <= 10)
            if not ok_class or parse_int(level) is None:
                self.report(ERROR, section, "Loglevel",
                            f"Loglevel element {item!r} is not CLASS=LEVEL (CLASS 0..10 or A, "
                            "LEVEL a number, e.g. A=10)")
        for tag in ("Use-Keynote", "Delete-SAs"):
            bound = self.store.binding(section, tag)
            if bound is not None and not bound.value.startswith(("yes", "no")):
                meaning = "off" if tag == "Use-Keynote" else "yes"
                self.report(WARNING, section, tag,
                            f"{tag}={bound.value!r} neither starts with 'yes' nor 'no' "
                            f"(compared case-sensitively), so it counts as {meaning}; write "
                            "yes or no")

    def phase_1_root(self) -> None:
        section = "Phase 1"
        for bound in self.store.tags(section):
            name = bound.value.strip()
            if bound.tag.lower() != "default":
                try:
                    parsed = ipaddress.ip_address(bound.tag)
                except ValueError:
                    self.report(ERROR, section, bound.tag,
                                f"tag {bound.tag!r} in [Phase 1] must be a peer's numeric IP "
                                "address (or Default)")
                    continue
                # Peers are found by comparing addresses (ike.policy.find_peer_section);
                # OpenBSD compares the text, case-insensitively.
                if str(parsed).lower() != bound.tag.lower():
                    self.report(WARNING, section, bound.tag,
                                f"peer address {bound.tag!r} is not in canonical form; it "
                                "works here, but OpenBSD's isakmpd matches it as text and "
                                f"would never find it; write it as {parsed}")
            if self.target(section, bound.tag, name, "ISAKMP-peer", None):
                self.peer(name, bound, initiate=False)

    def phase_2_root(self) -> None:
        section = "Phase 2"
        active = self.listed(section, "Connections", None)
        passive = self.listed(section, "Passive-connections", None)
        for tag, names, is_active in (("Connections", active, True),
                                      ("Passive-connections", passive, False)):
            bound = self.store.binding(section, tag)
            for name in names:
                if self.target(section, tag, name, "IPsec-connection", None):
                    self.connection(name, bound, active=is_active)

    # -- phase 1 ------------------------------------------------------------------

    def _once(self, kind: str, name: str, extra: str = "") -> bool | None:
        return self._memo.get((kind, name.lower(), extra))

    def _done(self, kind: str, name: str, ok: bool, extra: str = "") -> bool:
        ok = ok and name.lower() not in self.broken
        self._memo[(kind, name.lower(), extra)] = ok
        if not ok:
            self.broken.add(name.lower())
        return ok

    def peer(self, name: str, ref: Binding | None, *, initiate: bool) -> bool:
        mode = "initiate" if initiate else "respond"
        known = self._once("peer", name, mode)
        if known is not None:
            return known
        self.unknown_tags(name, "ISAKMP-peer", ref)
        ok = True
        phase = self.store.binding(name, "Phase")
        if phase is None and initiate:
            self.require(name, "Phase", "Phase=1 is needed to start phase 1 with this peer",
                         ref)
        elif phase is not None and phase.value.strip() != "1":
            self.report(ERROR, name, "Phase",
                        f"Phase={phase.value!r} in an ISAKMP-peer section; write Phase=1", ref)
        if initiate:
            self.require(name, "Address", "the peer's IP address is needed to initiate", ref)
        self.address(name, "Address", ref)
        self.address(name, "Local-address", ref)
        self.number(name, "Port", 1, 65535, ref)
        transport = self.store.get_str(name, "Transport")
        if transport is not None and transport.strip().lower() != "udp":
            self.report(ERROR, name, "Transport",
                        f"Transport={transport!r} is not supported; write udp (or remove it)",
                        ref)
        secret = self.store.get_str(name, "Authentication")
        if secret is not None and secret.startswith("0x"):
            try:
                bytes.fromhex(secret[2:])
            except ValueError:
                self.report(ERROR, name, "Authentication",
                            "a pre-shared key starting with 0x is read as hex, but the rest "
                            "is not an even number of hex digits; fix the digits or quote it "
                            "differently (a key may not start with 0x as text)", ref)
        for flag in self.listed(name, "Flags", ref):
            if flag.lower() != "ikecfg":
                self.report(WARNING, name, "Flags",
                            f"unknown ISAKMP-peer flag {flag!r} is ignored (known: ikecfg)", ref)
        for tag in ("ID", "Remote-ID"):
            bound = self.store.binding(name, tag)
            if bound is not None:
                target = bound.value.strip()
                if self.target(name, bound.tag, target, "Phase1-ID", ref):
                    ok &= self.phase_1_id(target, self._carry(bound, ref))
                else:
                    ok = False
        config = self.store.binding(name, "Configuration")
        config_name = (config.value.strip() if config is not None
                       else "Default-phase-1-configuration")
        config_ref = self._carry(config, ref) if config is not None else ref
        if config is not None and not self.target(name, config.tag, config_name,
                                                  "ISAKMP-configuration", ref):
            ok = False
        elif self.store.has(config_name):
            ok &= self.phase_1_configuration(config_name, config_ref)
            if secret is None and "pre_shared" in self._auth_methods(config_name):
                self.report(WARNING, name, None,
                            "the configuration offers pre-shared key authentication but "
                            "this peer has no Authentication tag; add Authentication=<key> "
                            "(or an initiator-ID section with one)", ref)
        return self._done("peer", name, ok, mode)

    def _auth_methods(self, config: str) -> set[str]:
        return {(self.store.get_str(xf, "AUTHENTICATION_METHOD") or "").strip().lower()
                for xf in self.store.get_list(config, "Transforms")}

    def phase_1_configuration(self, name: str, ref: Binding | None) -> bool:
        known = self._once("p1conf", name)
        if known is not None:
            return known
        self.unknown_tags(name, "ISAKMP-configuration", ref)
        self.enum(name, "DOI", Doi, frozenset(Doi), ref)
        self.enum(name, "EXCHANGE_TYPE", ExchangeType,
                  frozenset({ExchangeType.ID_PROT, ExchangeType.AGGRESSIVE}), ref,
                  required="ID_PROT (Main Mode) or AGGRESSIVE")
        ok = True
        bound = self.require(name, "Transforms", "the list of ISAKMP-transform sections to "
                             "offer and accept", ref)
        if bound is not None:
            items = self.listed(name, bound.tag, ref)
            if not items:
                self.report(ERROR, name, bound.tag, "Transforms is empty; list at least one "
                            "transform, e.g. AES-256-SHA2-256-GRP14", ref)
            for item in items:
                if self.target(name, bound.tag, item, "ISAKMP-transform", ref):
                    ok &= self.isakmp_transform(item, self._carry(bound, ref))
                else:
                    ok = False
        return self._done("p1conf", name, ok)

    def isakmp_transform(self, name: str, ref: Binding | None) -> bool:
        known = self._once("p1xf", name)
        if known is not None:
            return known
        self.unknown_tags(name, "ISAKMP-transform", ref)
        cipher = self.enum(name, "ENCRYPTION_ALGORITHM", EncryptionAlgorithm,
                           SUPPORTED_ENCRYPTION, ref, allow_any=True,
                           required="the phase 1 cipher")
        self.enum(name, "HASH_ALGORITHM", HashAlgorithm, SUPPORTED_HASHES, ref,
                  allow_any=True, required="the phase 1 hash")
        self.enum(name, "AUTHENTICATION_METHOD", AuthMethod, SUPPORTED_AUTH, ref,
                  allow_any=True, required="PRE_SHARED or RSA_SIG")
        if self.store.has(name, "GROUP_DESCRIPTION"):
            self.enum(name, "GROUP_DESCRIPTION", GroupDescription, SUPPORTED_GROUPS, ref,
                      allow_any=True)
        elif self.store.has(name, "GROUP_TYPE"):
            pass   # reported below as unsupported
        else:
            self.require(name, "GROUP_DESCRIPTION", "the Diffie-Hellman group, e.g. MODP_2048",
                         ref)
        for tag in ("GROUP_TYPE", "GROUP_PRIME", "GROUP_GENERATOR_ONE", "GROUP_GENERATOR_TWO",
                    "GROUP_CURVE_A", "GROUP_CURVE_B", "FIELD_SIZE", "GROUP_ORDER", "PRF"):
            if self.store.has(name, tag):
                what = ("a PRF attribute (the PRF is always the HMAC of HASH_ALGORITHM)"
                        if tag == "PRF" else "custom Diffie-Hellman groups")
                self.report(ERROR, name, tag,
                            f"{tag} is not supported: {what}; remove it (use "
                            "GROUP_DESCRIPTION for the group)", ref)
        offered = self.offer(name, "KEY_LENGTH", ref)
        if offered is not None and cipher is not None:
            bits = MM_KEY_BITS.get(cipher)
            if bits is None:
                self.report(WARNING, name, "KEY_LENGTH",
                            f"{cipher.label} has a fixed key length; KEY_LENGTH is ignored", ref)
            elif offered[0] % 8 or not bits[0] <= offered[0] <= bits[1]:
                self.report(ERROR, name, "KEY_LENGTH",
                            f"KEY_LENGTH {offered[0]} is not valid for {cipher.label}: use a "
                            f"multiple of 8 from {bits[0]} to {bits[1]}", ref)
            elif cipher is EncryptionAlgorithm.AES_CBC and offered[0] not in (128, 192, 256):
                self.report(ERROR, name, "KEY_LENGTH",
                            f"KEY_LENGTH {offered[0]} is not valid for {cipher.label}: AES "
                            "keys are 128, 192 or 256 bits", ref)
        ok = self.lifetimes(name, ref)
        return self._done("p1xf", name, ok)

    def lifetimes(self, name: str, ref: Binding | None) -> bool:
        bound = self.store.binding(name, "Life")
        if bound is None or is_any(bound.value):
            return True
        ok = True
        for item in self.listed(name, bound.tag, ref):
            if self.target(name, bound.tag, item, "Lifetime", ref):
                ok &= self.lifetime(item, self._carry(bound, ref))
            else:
                ok = False
        return ok

    def lifetime(self, name: str, ref: Binding | None) -> bool:
        known = self._once("life", name)
        if known is not None:
            return known
        self.unknown_tags(name, "Lifetime", ref)
        bound = self.require(name, "LIFE_TYPE", "SECONDS or KILOBYTES", ref)
        if bound is not None and is_any(bound.value):
            self.report(ERROR, name, "LIFE_TYPE", "LIFE_TYPE cannot be ANY; write SECONDS or "
                        "KILOBYTES", ref)
        else:
            self.enum(name, "LIFE_TYPE", LifeType, frozenset(LifeType), ref)
        duration = self.require(name, "LIFE_DURATION", "e.g. 3600 or 3600,60:86400", ref)
        # A generated duration comes from [General]:Default-phase-N-lifetime, which
        # is checked (and reported) there.
        if duration is not None and duration.origin.kind is not OriginKind.DEFAULT:
            self.offer(name, "LIFE_DURATION", ref)
        return self._done("life", name, True)

    def _id_type(self, name: str, allowed: frozenset[IdType], ref: Binding | None,
                 what: str) -> IdType | None:
        bound = self.require(name, "ID-type", f"the {what} type", ref)
        if bound is None:
            return None
        try:
            member = IdType.from_label(bound.value)
        except KeyError:
            member = None
        if member not in allowed:
            self.report(ERROR, name, "ID-type",
                        f"ID-type {bound.value!r} cannot be used in a {what}; use one of "
                        f"{_describe_names(allowed)}", ref)
            return None
        return IdType(member)

    def _network(self, name: str, id_type: IdType, ref: Binding | None,
                 interface_ok: bool) -> None:
        family = 6 if id_type in (IdType.IPV6_ADDR, IdType.IPV6_ADDR_SUBNET) else 4
        if id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            if self.require(name, "Address", f"{id_type.label} needs an Address", ref):
                self.address(name, "Address", ref, family=family, interface_ok=interface_ok)
            return
        network = self.require(name, "Network", f"{id_type.label} needs Network and Netmask",
                               ref)
        netmask = self.require(name, "Netmask", f"{id_type.label} needs Network and Netmask",
                               ref)
        good = True
        if network is not None:
            good &= self.address(name, "Network", ref, family=family,
                                 interface_ok=interface_ok)
        if netmask is not None:
            good &= self.address(name, "Netmask", ref, family=family)
        if not good or network is None or netmask is None:
            return
        if not _is_ip(network.value):
            return      # an interface name or "default"
        try:
            net = ipaddress.ip_network(f"{network.value.strip()}/{netmask.value.strip()}",
                                       strict=False)
        except ValueError:
            self.report(WARNING, name, "Netmask",
                        f"Netmask {netmask.value.strip()!r} is not contiguous (like "
                        "255.255.255.0); check it", ref)
            return
        if str(net.network_address) != network.value.strip():
            self.report(WARNING, name, "Network",
                        f"Network {network.value.strip()} has host bits set for Netmask "
                        f"{netmask.value.strip()}; the network is {net.network_address}", ref)

    def phase_1_id(self, name: str, ref: Binding | None) -> bool:
        known = self._once("p1id", name)
        if known is not None:
            return known
        self.unknown_tags(name, "Phase1-ID", ref)
        id_type = self._id_type(name, PHASE_1_ID_TYPES, ref, "phase 1 ID")
        if id_type is not None:
            if id_type in (IdType.FQDN, IdType.USER_FQDN, IdType.KEY_ID):
                bound = self.require(name, "Name", f"{id_type.label} needs a Name", ref)
                if (bound is not None and id_type is IdType.USER_FQDN
                        and "@" not in bound.value):
                    self.report(WARNING, name, "Name",
                                f"USER_FQDN {bound.value!r} has no '@'; it should look like "
                                "user@example.org", ref)
            else:
                self._network(name, id_type, ref, interface_ok=False)
        return self._done("p1id", name, True)

    # -- phase 2 ------------------------------------------------------------------

    def connection(self, name: str, ref: Binding | None, *, active: bool) -> bool:
        mode = "active" if active else "passive"
        known = self._once("conn", name, mode)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-connection", ref)
        ok = True
        phase = self.require(name, "Phase", "Phase=2 marks an IPsec connection", ref)
        if phase is not None and phase.value.strip() != "2":
            self.report(ERROR, name, "Phase",
                        f"Phase={phase.value!r} in an IPsec-connection section; write Phase=2",
                        ref)
        flags = [flag.lower() for flag in self.listed(name, "Flags", ref)]
        for flag in flags:
            if flag not in ("active-only", "__ondemand", "ikecfg"):
                self.report(WARNING, name, "Flags",
                            f"unknown connection flag {flag!r} is ignored (known: "
                            "active-only)", ref)
        peer = self.store.binding(name, "ISAKMP-peer")
        if peer is None and active:
            self.require(name, "ISAKMP-peer", "the ISAKMP-peer section to negotiate phase 1 "
                         "with, needed to start this connection", ref)
        elif peer is not None:
            target = peer.value.strip()
            if self.target(name, peer.tag, target, "ISAKMP-peer", ref):
                ok &= self.peer(target, self._carry(peer, ref), initiate=active)
            else:
                ok = False
        config = self.require(name, "Configuration", "the IPsec-configuration with the "
                              "suites to offer and accept", ref)
        if config is not None:
            target = config.value.strip()
            if self.target(name, config.tag, target, "IPsec-configuration", ref):
                ok &= self.ipsec_configuration(target, self._carry(config, ref))
            else:
                ok = False
        for tag in ("Local-ID", "Remote-ID", "NAT-ID"):
            bound = self.store.binding(name, tag)
            if bound is None:
                continue
            target = bound.value.strip()
            if self.target(name, bound.tag, target, "IPsec-ID", ref):
                ok &= self.ipsec_id(target, self._carry(bound, ref))
            else:
                ok = False
        if not self.store.has(name, "Local-ID"):
            if not active:
                self.require(name, "Local-ID", "a passive connection is matched by its "
                             "Local-ID and Remote-ID", ref)
            elif "active-only" not in flags:
                self.report(WARNING, name, None,
                            "no Local-ID: this connection can be started by us but will not "
                            "be accepted when the peer starts it; add Local-ID (or "
                            "Flags=active-only)", ref)
        return self._done("conn", name, ok, mode)

    def ipsec_configuration(self, name: str, ref: Binding | None) -> bool:
        known = self._once("p2conf", name)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-configuration", ref)
        self.enum(name, "DOI", Doi, frozenset({Doi.IPSEC}), ref)
        self.enum(name, "EXCHANGE_TYPE", ExchangeType, frozenset({ExchangeType.QUICK_MODE}),
                  ref, required="QUICK_MODE")
        ok = True
        bound = self.require(name, "Suites", "the list of IPsec suites to offer and accept",
                             ref)
        groups: dict[str | None, str] = {}
        if bound is not None:
            items = self.listed(name, bound.tag, ref)
            if not items:
                self.report(ERROR, name, bound.tag, "Suites is empty; list at least one "
                            "suite, e.g. QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE", ref)
            for item in items:
                if self.target(name, bound.tag, item, "IPsec-suite", ref):
                    ok &= self.suite(item, self._carry(bound, ref))
                    for group in self._groups.get(item.lower(), set()):
                        groups.setdefault(group, item)
                else:
                    ok = False
            if len(groups) > 1:
                described = ", ".join(f"{suite} has {group or 'no PFS group'}"
                                      for group, suite in groups.items())
                self.report(ERROR, name, bound.tag,
                            "every transform offered in one Quick Mode must carry the same "
                            f"GROUP_DESCRIPTION (or none), but {described}; use suites with "
                            "one PFS group", ref)
                ok = False
        return self._done("p2conf", name, ok)

    def suite(self, name: str, ref: Binding | None) -> bool:
        known = self._once("suite", name)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-suite", ref)
        ok = True
        groups: set[str | None] = set()
        bound = self.require(name, "Protocols", "the list of IPsec-protocol sections", ref)
        if bound is not None:
            for item in self.listed(name, bound.tag, ref):
                if self.target(name, bound.tag, item, "IPsec-protocol", ref):
                    ok &= self.protocol(item, self._carry(bound, ref))
                    groups |= self._groups.get(item.lower(), set())
                else:
                    ok = False
        self._groups[name.lower()] = groups
        return self._done("suite", name, ok)

    def protocol(self, name: str, ref: Binding | None) -> bool:
        known = self._once("proto", name)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-protocol", ref)
        proto = self.enum(name, "PROTOCOL_ID", ProtocolId,
                          frozenset({ProtocolId.IPSEC_AH, ProtocolId.IPSEC_ESP,
                                     ProtocolId.IPCOMP}),
                          ref, required="IPSEC_ESP, IPSEC_AH or IPCOMP")
        self.number(name, "ReplayWindow", 0, 2**32 - 1, ref)
        ok = True
        groups: set[str | None] = set()
        bound = self.require(name, "Transforms", "the list of IPsec-transform sections", ref)
        if bound is not None:
            for item in self.listed(name, bound.tag, ref):
                if not self.target(name, bound.tag, item, "IPsec-transform", ref):
                    ok = False
                    continue
                group = self.store.get_str(item, "GROUP_DESCRIPTION")
                groups.add(group.strip().upper() if group is not None else None)
                if proto is not None:
                    ok &= self.ipsec_transform(item, self._carry(bound, ref),
                                               ProtocolId(proto))
        self._groups[name.lower()] = groups
        return self._done("proto", name, ok)

    def ipsec_transform(self, name: str, ref: Binding | None, proto: ProtocolId) -> bool:
        known = self._once("p2xf", name, proto.label)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-transform", ref)
        kinds: dict[ProtocolId, tuple[type[Named], frozenset]] = {
            ProtocolId.IPSEC_ESP: (EspTransform, SUPPORTED_ESP),
            ProtocolId.IPSEC_AH: (AhTransform, SUPPORTED_AH),
            ProtocolId.IPCOMP: (IpcompTransform, SUPPORTED_IPCOMP),
        }
        kind, supported = kinds[proto]
        transform = self.enum(name, "TRANSFORM_ID", kind, supported, ref,
                              required=f"the {proto.label} transform")
        self.enum(name, "ENCAPSULATION_MODE", EncapsulationMode, SUPPORTED_ENCAP, ref)
        auth = self.enum(name, "AUTHENTICATION_ALGORITHM", AuthAlgorithm, SUPPORTED_AUTH_ALG,
                         ref)
        self.enum(name, "GROUP_DESCRIPTION", GroupDescription, SUPPORTED_GROUPS, ref)
        self.offer(name, "KEY_LENGTH", ref)
        if proto is ProtocolId.IPSEC_AH and not self.store.has(name, "AUTHENTICATION_ALGORITHM"):
            self.report(WARNING, name, None,
                        "an AH transform without AUTHENTICATION_ALGORITHM is refused by "
                        "isakmpd responders; add e.g. AUTHENTICATION_ALGORITHM=HMAC_SHA2_256",
                        ref)
        if transform in AEAD_ESP and auth is not None:
            self.report(ERROR, name, "AUTHENTICATION_ALGORITHM",
                        f"{transform.label} authenticates by itself and must not be combined "
                        "with an AUTHENTICATION_ALGORITHM (RFC 4106, 4543); remove it", ref)
        if transform is EspTransform.NULL and not self.store.has(name,
                                                                 "AUTHENTICATION_ALGORITHM"):
            self.report(ERROR, name, "TRANSFORM_ID",
                        "ESP with NULL encryption and no AUTHENTICATION_ALGORITHM protects "
                        "nothing (RFC 4303 forbids it); add an AUTHENTICATION_ALGORITHM", ref)
        for tag in ("KEY_ROUNDS", "COMPRESS_DICTIONARY_SIZE", "COMPRESS_PRIVATE_ALGORITHM",
                    "ECN_TUNNEL"):
            if self.store.has(name, tag):
                self.report(WARNING, name, tag,
                            f"peers (isakmpd included) refuse transforms carrying {tag}; "
                            "remove it", ref)
        ok = self.lifetimes(name, ref)
        return self._done("p2xf", name, ok, proto.label)

    def ipsec_id(self, name: str, ref: Binding | None) -> bool:
        known = self._once("p2id", name)
        if known is not None:
            return known
        self.unknown_tags(name, "IPsec-ID", ref)
        id_type = self._id_type(name, IPSEC_ID_TYPES, ref, "phase 2 (IPsec) ID")
        if id_type is not None:
            self._network(name, id_type, ref, interface_ok=True)
        protocol = self.store.get_str(name, "Protocol")
        if protocol is not None:
            value = protocol.strip()
            number = parse_int(value)
            if (number is None and not _NAME.fullmatch(value)) or (number or 0) > 255:
                self.report(ERROR, name, "Protocol",
                            f"Protocol={value!r} is neither a protocol number (0-255) nor a "
                            "protocol name like tcp or udp", ref)
        port = self.store.get_str(name, "Port")
        if port is not None:
            value = port.strip()
            number = parse_int(value)
            if (number is None and not _NAME.fullmatch(value)) or (number or 0) > 65535:
                self.report(ERROR, name, "Port",
                            f"Port={value!r} is neither a port number (0-65535) nor a "
                            "service name", ref)
            if protocol is None:
                self.report(ERROR, name, "Port",
                            "Port is set without Protocol, so it cannot be used; add "
                            "Protocol=tcp or Protocol=udp (or remove Port)", ref)
        return self._done("p2id", name, True)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _looks_like_interface(text: str) -> bool:
    """A plausible Linux interface name that is not a mistyped address."""
    if not 1 <= len(text) <= 15 or text in (".", ".."):
        return False
    if _IFNAME_FORBIDDEN.search(text):
        return False
    if all(char.isdigit() or char == "." for char in text):
        return False    # a broken IPv4 address, not an interface
    # Hex digits and colons only: a broken IPv6 address.
    return not (":" in text and _HEXISH.fullmatch(text))
