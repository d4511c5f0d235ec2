"""Negotiation policy from isakmpd.conf: what we offer, what we accept, keys and IDs.

This module owns the translation between the configuration store and the SA, ID and
key material of IKEv1 negotiations (inventory §2.3–2.5, §3, §4.2–4.5, §5.1; DESIGN.md
§4 and §5):

* Phase 1 offers (:func:`phase1_offer`): one proposal #1, protocol ISAKMP, no SPI,
  transforms numbered from 0 (as isakmpd does; RFC 2408 §3.6 does not fix the first
  number and strongSwan echoes whatever it gets), transform ID KEY_IKE, attributes in
  isakmpd's order ENC, HASH, AUTH, GROUP, {LIFE_TYPE, LIFE_DURATION}*, KEY_LENGTH.
  Lifetimes above 0xffff go out as 4-byte TLVs (the Attribute encoder does that).
  Aggressive Mode needs one DH group for every transform (inventory §4.3).
* Phase 1 responder choice (:func:`phase1_select`): the first offered transform, in
  the peer's order, that matches one of our configured transforms. Every attribute the
  peer sends must be one we know and support and must equal ours (or ours is ``ANY``);
  KEY_LENGTH must fall in our offer/accept range; each lifetime must match one of our
  Life sections. A lifetime LONGER than we accept is accepted and shortened to our
  maximum, with :attr:`Phase1Suite.responder_lifetime` set, so the exchange can send
  RESPONDER-LIFETIME (RFC 2407 §4.5.4); isakmpd would refuse it.
* Quick Mode offers (:func:`quick_mode_offer`): one proposal number per suite (from 1),
  every protocol of a suite repeating it, transforms numbered from 1 per proposal, the
  SPI from ``spi_for(protocol)`` (asked once per protocol, the same SPI in every
  proposal, as strongSwan does, so no unused SPIs are allocated), PFS = a
  GROUP_DESCRIPTION on every transform, the same everywhere. With NAT-T the
  encapsulation mode becomes UDP_ENCAP_TUNNEL/TRANSPORT (RFC 3947 §5.1).
* Quick Mode responder choice (:func:`quick_mode_select`): unlike isakmpd, which only
  checks attribute compatibility and KeyNote, we accept only what one of the suites
  configured for the matching connection allows (DESIGN.md §4): same protocols, transform
  ID, encapsulation mode, authentication algorithm (present or absent alike), key length
  range, PFS group (PFS versus no PFS included) and lifetimes.
* IPComp (RFC 2407 §4.4.5, RFC 3173): a suite may hold an IPCOMP protocol next to
  ESP or AH (the same proposal number, as isakmpd sends it) or alone; its transforms
  are DEFLATE or LZS (what Linux installs; OUI and V42BIS are refused as not
  installable), its "SPI" is the 2-byte CPI. It takes no part in the PFS rule when
  its transforms carry no GROUP_DESCRIPTION (strongSwan sends none there).
* Refusals raise :class:`NegotiationError` carrying the notify to send and a message
  naming the peer, what it offered, what we accept, and the attribute that differed for
  the closest candidate (DESIGN.md §5).
* Pre-shared keys (§5.1), phase 1 IDs and Remote-ID enforcement, phase 2 IDs and the
  passive connection lookup (§2.3, §4.5).

Pure: configuration store and payload objects in, payloads and frozen dataclasses out;
no I/O, no Twisted, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from isakmpd.config.store import Store
from isakmpd.config.validate import (
    SUPPORTED_AUTH,
    SUPPORTED_AUTH_ALG,
    SUPPORTED_ENCRYPTION,
    SUPPORTED_GROUPS,
    SUPPORTED_HASHES,
    SUPPORTED_IPCOMP,
)
from isakmpd.config.values import is_any, match_number, offered_value, parse_offer
from isakmpd.crypto.cipher import DEFAULT_KEY_BITS, phase1_key_bytes
from isakmpd.crypto.ipsec_keys import ESP_DEFAULT_KEY_BITS, ah_layout, esp_layout
from isakmpd.crypto.prf import CryptoError
from isakmpd.ike import ids
from isakmpd.ike.natt import encapsulation_for, plain_mode
from isakmpd.wire.attributes import Attribute
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
    IkeAttr,
    IpcompTransform,
    IpsecAttr,
    IsakmpTransform,
    LifeType,
    Named,
    NotifyType,
    ProtocolId,
    Situation,
    member,
)
from isakmpd.wire.errors import DecodeError
from isakmpd.wire.payloads import IdPayload, ProposalPayload, SaPayload, TransformPayload

__all__ = [
    "DEFAULT_PHASE_1_CONFIGURATION",
    "NegotiationError",
    "Phase1Suite",
    "Phase2Suite",
    "ProtocolChoice",
    "check_remote_id",
    "connection_ids",
    "connection_peer",
    "exchange_type",
    "find_passive_connection",
    "find_peer_section",
    "phase1_accept",
    "phase1_local_id",
    "phase1_offer",
    "phase1_select",
    "pre_shared_key",
    "quick_mode_accept",
    "quick_mode_offer",
    "quick_mode_select",
]

DEFAULT_PHASE_1_CONFIGURATION = "Default-phase-1-configuration"
PHASE_1_FIRST_TRANSFORM = 0      # isakmpd numbers phase 1 transforms from 0
PHASE_2_FIRST_TRANSFORM = 1
DEFAULT_REPLAY_WINDOW = 16
_SUMMARY_LIMIT = 6               # offered alternatives listed in a refusal message

_NOTIFY = NotifyType.NO_PROPOSAL_CHOSEN


class NegotiationError(Exception):
    """A refusal: ``notify`` is what to send the peer, ``message`` what to log."""

    def __init__(self, notify: NotifyType, message: str) -> None:
        super().__init__(message)
        self.notify = notify
        self.message = message

    def __repr__(self) -> str:
        return f"NegotiationError({self.notify.label}, {self.message!r})"


def _config_error(message: str) -> NegotiationError:
    """Our own configuration cannot be used (validation should have said so)."""
    return NegotiationError(_NOTIFY, f"configuration error: {message}")


# --- small helpers --------------------------------------------------------------------

_CIPHER_SHORT = {
    EncryptionAlgorithm.AES_CBC: "AES", EncryptionAlgorithm.TRIPLE_DES_CBC: "3DES",
    EncryptionAlgorithm.BLOWFISH_CBC: "BLF", EncryptionAlgorithm.CAST_CBC: "CAST",
    EncryptionAlgorithm.DES_CBC: "DES",
}
_ESP_SHORT = {
    EspTransform.AES: "AES", EspTransform.TRIPLE_DES: "3DES", EspTransform.BLOWFISH: "BLF",
    EspTransform.CAST: "CAST", EspTransform.AES_CTR: "AESCTR",
    EspTransform.AES_GCM_16: "AESGCM", EspTransform.AES_GMAC: "AESGMAC",
    EspTransform.NULL: "NULL",
}
_TRANSFORM_KINDS: dict[int, type[Named]] = {
    ProtocolId.IPSEC_ESP: EspTransform, ProtocolId.IPSEC_AH: AhTransform,
    ProtocolId.IPCOMP: IpcompTransform,
}


def _name(kind: type[Named], value: int | None) -> str:
    return "none" if value is None else kind.describe(value)


def _short_cipher(names: Mapping[int, str], kind: type[Named], value: int | None,
                  key: str | None) -> str:
    if value is None:
        text = "ANY"
    else:
        text = names.get(value) or kind.describe(value)
    return f"{text}-{key}" if key else text


def _range_text(text: str) -> str:
    """``256`` for ``256,256:256``, ``128:256`` for ``128,128:256``, ``ANY`` for ANY."""
    if is_any(text):
        return "ANY"
    try:
        offer = parse_offer(text)
    except ValueError:
        return text.strip()
    if offer.low == offer.high:
        return str(offer.low)
    return f"{offer.low}:{offer.high}"


def _summary(items: list[str]) -> str:
    if not items:
        return "nothing"
    shown = items[:_SUMMARY_LIMIT]
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _get(store: Store, section: str, tag: str) -> str | None:
    value = store.get_str(section, tag)
    return None if value is None else value.strip()


_ANY = object()     # marker: the configured value is ANY


def _conf_enum(store: Store, section: str, tag: str, kind: type[Named],
               ) -> Named | object | None:
    """A configured enum tag: the member, ``_ANY``, or None when absent."""
    text = _get(store, section, tag)
    if text is None:
        return None
    if is_any(text):
        return _ANY
    try:
        return kind.from_label(text)
    except KeyError:
        raise _config_error(f"[{section}] {tag}={text!r} is not a known "
                            f"{kind.__name__} name") from None


@dataclass(frozen=True)
class _LifeRule:
    """One Lifetime section (or the ANY wildcard)."""

    section: str
    life_type: int
    duration: str          # the configured offer/accept text, maybe ANY

    def high(self) -> int | None:
        if is_any(self.duration):
            return None
        try:
            return parse_offer(self.duration).high
        except ValueError:
            return None


def _life_rules(store: Store, section: str) -> list[_LifeRule] | None:
    """The Life sections of a transform; None means ANY (or no Life tag at all)."""
    text = _get(store, section, "Life")
    if text is None or is_any(text):
        return None
    rules: list[_LifeRule] = []
    for name in store.get_list(section, "Life"):
        if not store.has(name):
            raise _config_error(f"[{section}] Life names [{name}], which does not exist")
        type_text = _get(store, name, "LIFE_TYPE")
        duration = _get(store, name, "LIFE_DURATION")
        if type_text is None or duration is None:
            raise _config_error(f"[{name}] needs LIFE_TYPE and LIFE_DURATION")
        try:
            life_type = LifeType.from_label(type_text)
        except KeyError:
            raise _config_error(f"[{name}] LIFE_TYPE={type_text!r} is not SECONDS or "
                                "KILOBYTES") from None
        if not is_any(duration):
            try:
                parse_offer(duration)
            except ValueError as error:
                raise _config_error(f"[{name}] LIFE_DURATION: {error}") from None
        rules.append(_LifeRule(name, int(life_type), duration))
    return rules


def _life_attributes(rules: list[_LifeRule] | None, type_attr: int, duration_attr: int,
                     section: str) -> list[Attribute]:
    attributes: list[Attribute] = []
    for rule in rules or ():
        if is_any(rule.duration):
            raise _config_error(f"[{rule.section}] LIFE_DURATION=ANY can be accepted but "
                                f"not offered (used by [{section}])")
        attributes.append(Attribute(type_attr, rule.life_type))
        attributes.append(Attribute(duration_attr, offered_value(rule.duration)))
    return attributes


@dataclass
class _LifeCheck:
    """Outcome of matching offered lifetimes against our rules."""

    reason: str | None = None
    seconds: int | None = None
    kilobytes: int | None = None
    shortened: bool = False


def _match_lives(offered: list[tuple[int, int]], rules: list[_LifeRule] | None
                 ) -> _LifeCheck:
    """RFC 2407 §4.5 / RFC 2409 appendix A: each offered (type, duration) vs our rules."""
    result = _LifeCheck()
    for life_type, duration in offered:
        value = duration
        if rules is not None:
            candidates = [rule for rule in rules if rule.life_type == life_type]
            if not candidates:
                accepted = ", ".join(LifeType.describe(r.life_type) for r in rules) or "none"
                result.reason = (f"lifetime type {LifeType.describe(life_type)} is not "
                                 f"accepted (we accept {accepted})")
                return result
            fits = [rule for rule in candidates if match_number(rule.duration, duration)]
            if not fits:
                highs = [rule.high() for rule in candidates]
                longer = [high for high in highs if high is not None and duration > high]
                if len(longer) == len(candidates):
                    # Longer than any we accept: take our maximum and say so later
                    # with RESPONDER-LIFETIME (RFC 2407 §4.5.4).
                    value = max(longer)
                    result.shortened = True
                else:
                    ranges = ", ".join(_range_text(rule.duration) for rule in candidates)
                    unit = "s" if life_type == LifeType.SECONDS else "KB"
                    result.reason = (f"lifetime {duration} {unit} is not in {ranges} "
                                     f"({candidates[0].section})")
                    return result
        if life_type == LifeType.SECONDS:
            result.seconds = value
        elif life_type == LifeType.KILOBYTES:
            result.kilobytes = value
    return result


def _read_lives(transform: TransformPayload, type_attr: int, duration_attr: int
                ) -> tuple[list[tuple[int, int]], str | None]:
    """(type, duration) pairs in order, or a problem text."""
    pairs: list[tuple[int, int]] = []
    pending: int | None = None
    for attribute in transform.attributes:
        if attribute.type == type_attr:
            if pending is not None:
                return pairs, "a LIFE_TYPE without LIFE_DURATION"
            pending = attribute.as_int()
            if pending not in (LifeType.SECONDS, LifeType.KILOBYTES):
                return pairs, f"lifetime type {pending} is unknown"
        elif attribute.type == duration_attr:
            if pending is None:
                return pairs, "a LIFE_DURATION without LIFE_TYPE"
            pairs.append((pending, attribute.as_int()))
            pending = None
    if pending is not None:
        return pairs, "a LIFE_TYPE without LIFE_DURATION"
    return pairs, None


# --- phase 1 ---------------------------------------------------------------------------

# Read once: an enum class's attribute costs a Python-level call in 3.11.
_ISAKMP = ProtocolId.ISAKMP


@dataclass(frozen=True, slots=True)
class Phase1Suite:
    """The chosen phase 1 transform.

    ``key_length`` is the KEY_LENGTH attribute in bits (None when the proposal had none;
    :func:`isakmpd.crypto.cipher.phase1_key_bytes` applies the default). When
    ``responder_lifetime`` is True we accepted a longer lifetime than our configuration
    allows and shortened it to ``life_seconds``/``life_kilobytes``; the exchange should
    tell the peer with a RESPONDER-LIFETIME notification. ``transform_number`` is the
    chosen transform's number (optional extra).
    """

    encryption: EncryptionAlgorithm
    key_length: int | None
    hash: HashAlgorithm
    auth_method: AuthMethod
    group: int
    life_seconds: int | None
    life_kilobytes: int | None
    responder_lifetime: bool = False
    transform_number: int | None = field(default=None, compare=False)

    def describe(self) -> str:
        """E.g. ``AES-256/SHA2_256/MODP_2048/PRE_SHARED``."""
        # Every SA's "established" line names its suite, and a gateway has few.
        return _phase1_suite_text(self.encryption, self.key_length, self.hash, self.group,
                                  self.auth_method)


@lru_cache(maxsize=64)
def _phase1_suite_text(encryption: int, key_length: int | None, hash_alg: int, group: int,
                       auth_method: int) -> str:
    key = str(key_length) if key_length is not None else None
    cipher = _short_cipher(_CIPHER_SHORT, EncryptionAlgorithm, encryption, key)
    return (f"{cipher}/{HashAlgorithm.describe(hash_alg)}/"
            f"{GroupDescription.describe(group)}/"
            f"{AuthMethod.describe(auth_method)}")


@dataclass
class _P1Offered:
    """A received phase 1 transform, read attribute by attribute."""

    transform: TransformPayload
    enc: int | None = None
    hash: int | None = None
    auth: int | None = None
    group: int | None = None
    key_length: int | None = None
    lives: list[tuple[int, int]] = field(default_factory=list)
    problem: str | None = None

    def describe(self) -> str:
        key = str(self.key_length) if self.key_length is not None else None
        return (f"{_short_cipher(_CIPHER_SHORT, EncryptionAlgorithm, self.enc, key)}/"
                f"{_name(HashAlgorithm, self.hash)}/{_name(GroupDescription, self.group)}/"
                f"{_name(AuthMethod, self.auth)}")


_P1_KNOWN = {IkeAttr.ENCRYPTION_ALGORITHM, IkeAttr.HASH_ALGORITHM,
             IkeAttr.AUTHENTICATION_METHOD, IkeAttr.GROUP_DESCRIPTION, IkeAttr.LIFE_TYPE,
             IkeAttr.LIFE_DURATION, IkeAttr.KEY_LENGTH}


def _read_p1(transform: TransformPayload) -> _P1Offered:
    """Read a phase 1 transform; ``problem`` says why it can never be accepted."""
    offered = _P1Offered(transform)
    try:
        _fill_p1(offered)
    except DecodeError as error:
        offered.problem = error.message
    return offered


def _fill_p1(offered: _P1Offered) -> None:
    transform = offered.transform
    if transform.transform_id != IsakmpTransform.KEY_IKE:
        offered.problem = f"transform ID {transform.transform_id} is not KEY_IKE"
        return
    for attribute in transform.attributes:
        kind = attribute.type
        if kind not in _P1_KNOWN:
            # PRF, GROUP_TYPE and the custom group attributes, FIELD_SIZE, GROUP_ORDER,
            # BLOCK_SIZE: isakmpd treats them as incompatible (inventory §3.1).
            offered.problem = f"attribute {IkeAttr.describe(kind)} is not supported"
            return
        if kind in (IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION):
            continue
        value = attribute.as_int()
        if kind == IkeAttr.ENCRYPTION_ALGORITHM:
            offered.enc = value
        elif kind == IkeAttr.HASH_ALGORITHM:
            offered.hash = value
        elif kind == IkeAttr.AUTHENTICATION_METHOD:
            offered.auth = value
        elif kind == IkeAttr.GROUP_DESCRIPTION:
            offered.group = value
        elif kind == IkeAttr.KEY_LENGTH:
            offered.key_length = value
    offered.lives, problem = _read_lives(transform, IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION)
    if problem:
        offered.problem = problem
        return
    for value, attr, supported, kind_name, kind in (
            (offered.enc, "ENCRYPTION_ALGORITHM", SUPPORTED_ENCRYPTION, "encryption",
             EncryptionAlgorithm),
            (offered.hash, "HASH_ALGORITHM", SUPPORTED_HASHES, "hash", HashAlgorithm),
            (offered.auth, "AUTHENTICATION_METHOD", SUPPORTED_AUTH, "authentication method",
             AuthMethod),
            (offered.group, "GROUP_DESCRIPTION", SUPPORTED_GROUPS, "group",
             GroupDescription)):
        if value is None:
            offered.problem = f"no {attr}"
            return
        if value not in supported:
            offered.problem = f"{kind_name} {kind.describe(value)} is not supported"
            return
    try:
        phase1_key_bytes(offered.enc, offered.key_length)    # type: ignore[arg-type]
    except CryptoError as error:
        offered.problem = str(error)


@dataclass(frozen=True)
class _P1Config:
    """One of our ISAKMP-transform sections."""

    name: str
    enc: object
    hash: object
    auth: object
    group: object
    key_length: str | None
    lives: list[_LifeRule] | None

    def describe(self) -> str:
        enc = None if self.enc is _ANY else self.enc
        key = _range_text(self.key_length) if self.key_length is not None else None
        parts = [_short_cipher(_CIPHER_SHORT, EncryptionAlgorithm, enc, key)]  # type: ignore
        for value, kind in ((self.hash, HashAlgorithm), (self.group, GroupDescription),
                            (self.auth, AuthMethod)):
            parts.append("ANY" if value is _ANY else _name(kind, value))  # type: ignore
        return "/".join(parts)


def _p1_config(store: Store, name: str) -> _P1Config:
    if not store.has(name):
        raise _config_error(f"ISAKMP transform [{name}] does not exist")
    for tag in ("GROUP_TYPE", "PRF", "FIELD_SIZE", "GROUP_ORDER", "GROUP_PRIME"):
        if store.has(name, tag):
            raise _config_error(f"[{name}] {tag} is not supported; remove it")
    values = {}
    for tag, kind in (("ENCRYPTION_ALGORITHM", EncryptionAlgorithm),
                      ("HASH_ALGORITHM", HashAlgorithm),
                      ("AUTHENTICATION_METHOD", AuthMethod),
                      ("GROUP_DESCRIPTION", GroupDescription)):
        value = _conf_enum(store, name, tag, kind)
        if value is None:
            raise _config_error(f"[{name}] has no {tag}")
        values[tag] = value
    key_length = _get(store, name, "KEY_LENGTH")
    if key_length is not None and not is_any(key_length):
        try:
            parse_offer(key_length)
        except ValueError as error:
            raise _config_error(f"[{name}] KEY_LENGTH: {error}") from None
    return _P1Config(name, values["ENCRYPTION_ALGORITHM"], values["HASH_ALGORITHM"],
                     values["AUTHENTICATION_METHOD"], values["GROUP_DESCRIPTION"],
                     key_length, _life_rules(store, name))


def _phase1_configuration(store: Store, peer_section: str) -> str:
    config = _get(store, peer_section, "Configuration") or DEFAULT_PHASE_1_CONFIGURATION
    if not store.has(config):
        raise _config_error(f"[{peer_section}] Configuration names [{config}], which does "
                            "not exist")
    return config


def _p1_configs(store: Store, peer_section: str) -> tuple[_P1Config, ...]:
    return store.memo(("p1-configs", peer_section.lower()),
                      lambda: _read_p1_configs(store, peer_section))


def _read_p1_configs(store: Store, peer_section: str) -> tuple[_P1Config, ...]:
    config = _phase1_configuration(store, peer_section)
    names = store.get_list(config, "Transforms")
    if not names:
        raise _config_error(f"[{config}] has no Transforms")
    return tuple(_p1_config(store, name) for name in names)


def find_peer_section(store: Store, remote_ip: str) -> str | None:
    """The ISAKMP-peer section for ``remote_ip`` from ``[Phase 1]``, else its Default.

    Tags are compared as addresses, so ``2001:DB8:0::1`` finds ``2001:db8::1``.
    """
    # One index of [Phase 1] for all peers (a per-address memo would fill the store's
    # memo with one entry per peer): the first tag of each address wins, as in a scan.
    by_text, by_address, default = store.memo(("peer-index",),
                                              lambda: _read_peer_index(store))
    found = by_text.get(remote_ip, _NO_TAG)     # an address as ipaddress writes it
    if found is not _NO_TAG:
        return found
    if not by_address:
        return default
    try:
        wanted = ipaddress.ip_address(remote_ip.strip())
    except ValueError:
        return default
    return by_address.get(wanted, default)


_NO_TAG = object()
_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_PeerIndex = tuple[dict[str, str | None], dict[_IpAddress, str | None], str | None]


def _read_peer_index(store: Store) -> _PeerIndex:
    by_address: dict[_IpAddress, str | None] = {}
    default: str | None = None
    for binding in store.tags("Phase 1"):
        tag = binding.tag.strip()
        if tag.lower() == "default":
            default = binding.value.strip() or None
            continue
        try:
            address = ipaddress.ip_address(tag)
        except ValueError:
            continue
        by_address.setdefault(address, binding.value.strip() or None)
    by_text = {str(address): section for address, section in by_address.items()}
    return by_text, by_address, default


def exchange_type(store: Store, peer_section: str) -> ExchangeType:
    """ID_PROT or AGGRESSIVE, from the peer's ISAKMP-configuration EXCHANGE_TYPE."""
    return store.memo(("exchange-type", peer_section.lower()),
                      lambda: _read_exchange_type(store, peer_section))


def _read_exchange_type(store: Store, peer_section: str) -> ExchangeType:
    config = _phase1_configuration(store, peer_section)
    text = _get(store, config, "EXCHANGE_TYPE")
    if text is None:
        raise _config_error(f"[{config}] has no EXCHANGE_TYPE (ID_PROT or AGGRESSIVE)")
    try:
        kind = ExchangeType.from_label(text)
    except KeyError:
        kind = None
    if kind not in (ExchangeType.ID_PROT, ExchangeType.AGGRESSIVE):
        raise _config_error(f"[{config}] EXCHANGE_TYPE={text!r} is not ID_PROT or "
                            "AGGRESSIVE")
    return ExchangeType(kind)


def phase1_offer(store: Store, peer_section: str) -> SaPayload:
    """The initiator's phase 1 SA payload (inventory §4.2, §4.3)."""
    configs = _p1_configs(store, peer_section)
    transforms: list[TransformPayload] = []
    for number, config in enumerate(configs, PHASE_1_FIRST_TRANSFORM):
        attributes: list[Attribute] = []
        for tag, value in (("ENCRYPTION_ALGORITHM", config.enc),
                           ("HASH_ALGORITHM", config.hash),
                           ("AUTHENTICATION_METHOD", config.auth),
                           ("GROUP_DESCRIPTION", config.group)):
            if value is _ANY:
                raise _config_error(f"[{config.name}] {tag}=ANY can be accepted but not "
                                    "offered")
            attributes.append(Attribute(IkeAttr[tag], int(value)))  # type: ignore
        attributes += _life_attributes(config.lives, IkeAttr.LIFE_TYPE,
                                       IkeAttr.LIFE_DURATION, config.name)
        if config.key_length is not None:
            if is_any(config.key_length):
                raise _config_error(f"[{config.name}] KEY_LENGTH=ANY can be accepted but "
                                    "not offered")
            attributes.append(Attribute(IkeAttr.KEY_LENGTH,
                                        offered_value(config.key_length)))
        transforms.append(TransformPayload(number, IsakmpTransform.KEY_IKE, attributes))
    if exchange_type(store, peer_section) == ExchangeType.AGGRESSIVE:
        groups = {int(config.group) for config in configs}     # type: ignore[call-overload]
        if len(groups) > 1:
            names = ", ".join(GroupDescription.describe(g) for g in sorted(groups))
            raise _config_error(
                f"Aggressive Mode sends its DH value before the peer chooses, so every "
                f"transform of [{_phase1_configuration(store, peer_section)}] must use the "
                f"same GROUP_DESCRIPTION, but they use {names}")
    proposal = ProposalPayload(1, ProtocolId.ISAKMP, b"", transforms)
    return SaPayload(Doi.IPSEC, Situation.IDENTITY_ONLY, [proposal])


def _p1_compare(offered: _P1Offered, config: _P1Config) -> tuple[int, str | None, _LifeCheck]:
    """(score, first differing attribute or None, lifetime outcome)."""
    score = 0
    checks: list[tuple[bool, Callable[[], str]]] = []

    def same(mine: object, theirs: int | None) -> bool:
        return mine is _ANY or (mine is not None and int(mine) == theirs)  # type: ignore

    checks.append((same(config.enc, offered.enc), lambda: (
        f"encryption differs ({_name(EncryptionAlgorithm, offered.enc)}, we accept "
        f"{EncryptionAlgorithm.describe(config.enc)})")))                    # type: ignore
    key_ok, key_reason = _key_length_ok(config.key_length, offered.key_length,
                                        DEFAULT_KEY_BITS.get(offered.enc))  # type: ignore
    checks.append((key_ok, lambda: key_reason))
    checks.append((same(config.hash, offered.hash), lambda: (
        f"hash differs ({_name(HashAlgorithm, offered.hash)}, we accept "
        f"{HashAlgorithm.describe(config.hash)})")))                          # type: ignore
    checks.append((same(config.auth, offered.auth), lambda: (
        f"authentication method differs ({_name(AuthMethod, offered.auth)}, we accept "
        f"{AuthMethod.describe(config.auth)})")))                             # type: ignore
    checks.append((same(config.group, offered.group), lambda: (
        f"group differs ({_name(GroupDescription, offered.group)}, we accept "
        f"{GroupDescription.describe(config.group)})")))                      # type: ignore
    lives = _match_lives(offered.lives, config.lives)
    checks.append((lives.reason is None, lambda: str(lives.reason)))
    reason = None
    for ok, why in checks:
        if ok:
            score += 1
        elif reason is None:
            reason = why()
    return score, reason, lives


def _key_length_ok(configured: str | None, offered: int | None, default: int | None
                   ) -> tuple[bool, str]:
    """KEY_LENGTH rule: what the peer sends must be in our range; absent = the default."""
    if offered is None:
        if configured is None or is_any(configured):
            return True, ""
        if default is None:
            return False, (f"no encryption key length offered, we accept "
                           f"{_range_text(configured)}")
        offered_bits = default
        label = f"default key length {default}"
    else:
        if configured is None:
            return False, f"encryption key length {offered} offered, we set none"
        offered_bits = offered
        label = str(offered)
    if match_number(configured, offered_bits):
        return True, ""
    return False, f"encryption key length differs ({label} not in {_range_text(configured)})"


def phase1_select(store: Store, peer_section: str, offered: SaPayload, peer: str, *,
                  ke_group: int | None = None) -> tuple[SaPayload, Phase1Suite]:
    """Responder: choose the first acceptable offered transform (inventory §4.2).

    Returns the reply SA (the chosen transform only, its number and attributes as
    received) and the suite. ``ke_group`` (optional; Aggressive Mode) restricts the
    choice to transforms of the group of the KE payload already received.
    Raises :class:`NegotiationError` (NO_PROPOSAL_CHOSEN, or PAYLOAD_MALFORMED when the
    SA does not hold exactly one ISAKMP proposal).
    """
    if len(offered.proposals) != 1:
        raise NegotiationError(NotifyType.PAYLOAD_MALFORMED,
                               f"peer {peer} sent {len(offered.proposals)} phase 1 "
                               "proposals; exactly one is allowed")
    proposal = offered.proposals[0]
    if proposal.protocol_id != _ISAKMP:
        raise NegotiationError(_NOTIFY, f"peer {peer} offered protocol "
                               f"{ProtocolId.describe(proposal.protocol_id)} in phase 1, "
                               "not ISAKMP")
    # The choice depends on the offer's bytes and our configuration only; a
    # gateway sees the same few offers from all its peers.
    key = ("p1-select", peer_section.lower(), ke_group,
           offered.raw if offered.raw is not None else offered.encode_body())
    plan = store.memo(key, lambda: _phase1_plan(store, peer_section, offered, ke_group))
    if plan is not None:
        return plan
    configs = _p1_configs(store, peer_section)
    reads = [_read_p1(transform) for transform in proposal.transforms]
    best: tuple[int, str] | None = None
    for read in reads:
        if read.problem is not None:
            if best is None:
                best = (-1, f"transform {read.transform.number}: {read.problem}")
            continue
        if ke_group is not None and read.group != ke_group:
            candidate = (0, (f"group {_name(GroupDescription, read.group)} differs from the "
                            f"KE payload's {GroupDescription.describe(ke_group)}"))
            if best is None or candidate[0] > best[0]:
                best = candidate
            continue
        for config in configs:
            score, reason, lives = _p1_compare(read, config)
            if reason is None:
                suite = _p1_suite(read, lives)
                chosen = replace(proposal, transforms=[read.transform.echo()])
                chosen.raw = None
                reply = SaPayload(offered.doi, offered.situation, [chosen])
                return reply, suite
            if best is None or score > best[0]:
                best = (score, reason)                                   # type: ignore
    offered_text = _summary([read.describe() for read in reads])
    ours = _summary([config.describe() for config in configs])
    why = best[1] if best is not None else "nothing was offered"
    raise NegotiationError(_NOTIFY, f"peer {peer} offered {offered_text}, we accept {ours} "
                                    f"for {peer_section}: {why}")


def _phase1_plan(store: Store, peer_section: str, offered: SaPayload,
                 ke_group: int | None) -> tuple[SaPayload, Phase1Suite] | None:
    """(the reply SA, the suite) of the first acceptable transform, or None (the caller
    then finds the reason). Remembered per offer, the reply is shared by every
    exchange that gets this offer: payloads are not changed once made."""
    proposal = offered.proposals[0]
    configs = _p1_configs(store, peer_section)
    for index, transform in enumerate(proposal.transforms):
        read = _read_p1(transform)
        if read.problem is not None or (ke_group is not None and read.group != ke_group):
            continue
        for config in configs:
            _score, reason, lives = _p1_compare(read, config)
            if reason is None:
                chosen = replace(proposal, transforms=[proposal.transforms[index].echo()])
                chosen.raw = None
                return SaPayload(offered.doi, offered.situation, [chosen]), _p1_suite(read,
                                                                                    lives)
    return None


def _p1_suite(read: _P1Offered, lives: _LifeCheck) -> Phase1Suite:
    return Phase1Suite(
        EncryptionAlgorithm(read.enc), read.key_length,      # type: ignore
        HashAlgorithm(read.hash), AuthMethod(read.auth),     # type: ignore
        int(read.group), lives.seconds, lives.kilobytes,     # type: ignore
        lives.shortened, read.transform.number)


def _p1_offer_matches(mine: _P1Offered, reply: _P1Offered) -> tuple[bool, _LifeCheck]:
    result = _LifeCheck()
    if (mine.enc, mine.hash, mine.auth, mine.group, mine.key_length) != (
            reply.enc, reply.hash, reply.auth, reply.group, reply.key_length):
        return False, result
    offered = dict(mine.lives)
    for life_type, duration in reply.lives:
        # A responder may shorten a lifetime (RFC 2407 §4.5.4), never lengthen it.
        if life_type not in offered or duration > offered[life_type]:
            return False, result
    chosen = dict(mine.lives)
    chosen.update(reply.lives)
    result.seconds = chosen.get(LifeType.SECONDS)
    result.kilobytes = chosen.get(LifeType.KILOBYTES)
    return True, result


def phase1_accept(offer: SaPayload, reply: SaPayload, peer: str) -> Phase1Suite:
    """Initiator: the responder's SA must hold exactly one of our transforms.

    A transform matches when ENC, HASH, AUTH, GROUP and KEY_LENGTH equal ours and each
    lifetime is one we offered, or shorter. Raises :class:`NegotiationError`.
    """
    if len(reply.proposals) != 1 or len(reply.proposals[0].transforms) != 1:
        count = sum(len(p.transforms) for p in reply.proposals)
        raise NegotiationError(NotifyType.PAYLOAD_MALFORMED,
                               f"peer {peer} answered phase 1 with {len(reply.proposals)} "
                               f"proposals and {count} transforms; exactly one transform "
                               "must be chosen")
    proposal = reply.proposals[0]
    chosen = _read_p1(proposal.transforms[0])
    if proposal.protocol_id != ProtocolId.ISAKMP:
        chosen.problem = f"protocol {ProtocolId.describe(proposal.protocol_id)}"
    mine = [_read_p1(t) for proposal in offer.proposals for t in proposal.transforms]
    if chosen.problem is None:
        ordered = sorted(mine, key=lambda m: m.transform.number != chosen.transform.number)
        for candidate in ordered:
            ok, lives = _p1_offer_matches(candidate, chosen)
            if ok:
                return Phase1Suite(
                    EncryptionAlgorithm(chosen.enc), chosen.key_length,      # type: ignore
                    HashAlgorithm(chosen.hash), AuthMethod(chosen.auth),     # type: ignore
                    int(chosen.group), lives.seconds, lives.kilobytes,       # type: ignore
                    False, chosen.transform.number)
    why = f" ({chosen.problem})" if chosen.problem else ""
    raise NegotiationError(_NOTIFY, f"peer {peer} chose {chosen.describe()}{why}, which is "
                                    f"not one of the transforms we offered "
                                    f"({_summary([m.describe() for m in mine])})")


def _decode_key(text: str, where: str) -> bytes:
    value = text.strip()
    if value[:2].lower() == "0x":
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise NegotiationError(NotifyType.AUTHENTICATION_FAILED,
                                   f"configuration error: {where} Authentication starts "
                                   "with 0x but is not hexadecimal") from None
    return value.encode("utf-8", "surrogateescape")


def pre_shared_key(store: Store, peer_section: str, remote_id: IdPayload | None
                   ) -> bytes | None:
    """The pre-shared key (inventory §5.1), or None when none is configured.

    The peer section's ``Authentication``; else, when the peer's ID is known, the
    ``Authentication`` of the section named by it (``[198.51.100.1]``,
    ``[host.example]``, ``[user@host.example]``). ``0x…`` values are hexadecimal.
    """
    # The peer section's key is needed at every phase 1: remembered until the
    # configuration changes (not the one of a section the peer's ID names: the peer
    # chooses that name).
    key = store.memo(("psk", peer_section.lower()),
                     lambda: _section_psk(store, peer_section))
    if key is not None or remote_id is None:
        return key
    section = ids.psk_section_name(remote_id)
    if section is None:
        return None
    return _section_psk(store, section)


def _section_psk(store: Store, section: str) -> bytes | None:
    """The ``Authentication`` of ``section`` as a key, or None when it has none."""
    text = store.get_str(section, "Authentication")
    if text is not None and text.strip():
        return _decode_key(text, f"[{section}]")
    return None


def _section_id(store: Store, section: str, phase: int) -> IdPayload:
    """The ID a section describes (:func:`ids.id_from_section`), remembered per store.

    Raises :class:`ids.IdError`; callers must not change the payload they get.
    """
    found = store.memo(("id", section.lower(), phase), lambda: _read_section_id(store, section,
                                                                               phase))
    if isinstance(found, ids.IdError):
        raise found
    return found


def _read_section_id(store: Store, section: str, phase: int) -> IdPayload | ids.IdError:
    try:
        return ids.id_from_section(store, section, phase=phase)
    except ids.IdError as error:
        return error


def _phase1_id_section(store: Store, section: str) -> IdPayload:
    try:
        return _section_id(store, section, 1)
    except ids.IdError as error:
        raise NegotiationError(NotifyType.INVALID_ID_INFORMATION,
                               f"configuration error: {error}") from None


def phase1_local_id(store: Store, peer_section: str, local_ip: str) -> IdPayload:
    """Our phase 1 ID: the peer section's ``ID`` (or [General] Default-phase-1-ID)
    section, else our address as IPV4_ADDR/IPV6_ADDR (inventory §5.3)."""
    # Read at every phase 1: remembered until the configuration changes.
    section = store.memo(("p1-local-id", peer_section.lower()),
                         lambda: _get(store, peer_section, "ID")
                         or _get(store, "General", "Default-phase-1-ID"))
    if section:
        return _phase1_id_section(store, section)
    return _address_id(local_ip)


# Our own addresses are few; like _section_id's, the payload is never changed.
_address_id = lru_cache(maxsize=64)(IdPayload.from_address)


def check_remote_id(store: Store, peer_section: str, received: IdPayload) -> None:
    """Enforce the peer section's ``Remote-ID`` (inventory §2.4): the received ID must
    be that ID (protocol and port are not compared in phase 1). No Remote-ID: no check.
    Raises :class:`NegotiationError` (INVALID_ID_INFORMATION)."""
    # Read at every phase 1: remembered until the configuration changes.
    section = store.memo(("p1-remote-id", peer_section.lower()),
                         lambda: _get(store, peer_section, "Remote-ID"))
    if not section:
        return
    expected = _phase1_id_section(store, section)
    if not ids.ids_match(expected, received, check_ports=False):
        raise NegotiationError(NotifyType.INVALID_ID_INFORMATION,
                               f"peer of {peer_section} identified itself as "
                               f"{ids.id_string(received)}, but Remote-ID [{section}] "
                               f"expects {ids.id_string(expected)}")


# --- phase 2 ---------------------------------------------------------------------------


# ProtocolChoice and Phase2Suite are values, never changed once made
# (dataclasses.replace makes another); not frozen, which would cost a call per field
# in every Quick Mode.
@dataclass(unsafe_hash=True, slots=True)
class ProtocolChoice:
    """One protocol (ESP or AH) of the chosen phase 2 proposal.

    ``encapsulation`` is TUNNEL or TRANSPORT (UDP_ENCAP values mapped back; whether
    NAT-T applies is the exchange's knowledge). ``key_length`` in bits, None when the
    transform had none.
    """

    protocol: ProtocolId
    transform_id: int
    encapsulation: EncapsulationMode
    auth_algorithm: int | None
    key_length: int | None
    life_seconds: int | None
    life_kilobytes: int | None
    our_spi: bytes
    peer_spi: bytes
    replay_window: int

    def describe(self) -> str:
        kind = _TRANSFORM_KINDS.get(self.protocol, EspTransform)
        key = str(self.key_length) if self.key_length is not None else None
        if self.protocol == ProtocolId.IPSEC_ESP:
            text = _short_cipher(_ESP_SHORT, kind, self.transform_id, key)
        else:
            text = kind.describe(self.transform_id)
        if self.auth_algorithm is not None:
            text += "/" + AuthAlgorithm.describe(self.auth_algorithm)
        short = "ESP" if self.protocol == ProtocolId.IPSEC_ESP else "AH"
        if self.protocol == ProtocolId.IPCOMP:
            short = "IPCOMP"
        return f"{short}:{text}"


@dataclass(unsafe_hash=True, slots=True)
class Phase2Suite:
    """The chosen phase 2 proposal: its protocols and PFS group (None: no PFS).

    ``responder_lifetime`` (optional extra) is True when we shortened a lifetime the
    peer offered to our maximum (send RESPONDER-LIFETIME); ``proposal_number`` is the
    chosen proposal's number.
    """

    protocols: tuple[ProtocolChoice, ...]
    pfs_group: int | None
    responder_lifetime: bool = False
    proposal_number: int | None = field(default=None, compare=False)
    # describe()'s text, made on first use: the SA's log lines (established, replaced,
    # deleted) each name the suite. Not copied by dataclasses.replace.
    _text: str | None = field(default=None, init=False, compare=False, repr=False)

    def describe(self) -> str:
        """E.g. ``ESP:AES-256/HMAC_SHA2_256 TUNNEL PFS MODP_2048``."""
        text = self._text
        if text is None:
            protocols = "+".join(choice.describe() for choice in self.protocols)
            mode = self.protocols[0].encapsulation.label if self.protocols else "?"
            pfs = (f"PFS {GroupDescription.describe(self.pfs_group)}"
                   if self.pfs_group is not None else "no PFS")
            text = self._text = f"{protocols} {mode} {pfs}"
        return text


@dataclass(frozen=True)
class _P2XfConfig:
    """One of our IPsec-transform sections."""

    name: str
    transform_id: object           # member or _ANY
    encapsulation: EncapsulationMode
    auth: object                   # member, _ANY or None
    group: object                  # member, _ANY or None
    key_length: str | None
    lives: list[_LifeRule] | None


@dataclass(frozen=True)
class _P2ProtoConfig:
    name: str
    protocol: ProtocolId
    replay_window: int
    transforms: list[_P2XfConfig]


@dataclass(frozen=True)
class _P2SuiteConfig:
    name: str
    protocols: list[_P2ProtoConfig]


def _p2_transform(store: Store, name: str, protocol: ProtocolId) -> _P2XfConfig:
    if not store.has(name):
        raise _config_error(f"IPsec transform [{name}] does not exist")
    for tag in ("KEY_ROUNDS", "COMPRESS_DICTIONARY_SIZE", "COMPRESS_PRIVATE_ALGORITHM",
                "ECN_TUNNEL"):
        if store.has(name, tag):
            raise _config_error(f"[{name}] {tag} is not supported; remove it")
    kind = _TRANSFORM_KINDS[protocol]
    transform_id = _conf_enum(store, name, "TRANSFORM_ID", kind)
    if transform_id is None:
        raise _config_error(f"[{name}] has no TRANSFORM_ID")
    if protocol == ProtocolId.IPCOMP and transform_id is not _ANY \
            and transform_id not in SUPPORTED_IPCOMP:
        raise _config_error(f"[{name}] TRANSFORM_ID={kind.describe(transform_id)} cannot be "
                            "installed: the Linux kernel compresses with DEFLATE and LZS "
                            "only")                                # type: ignore[arg-type]
    mode = _conf_enum(store, name, "ENCAPSULATION_MODE", EncapsulationMode)
    if mode is _ANY:
        raise _config_error(f"[{name}] ENCAPSULATION_MODE=ANY is not supported; write "
                            "TUNNEL or TRANSPORT")
    # The UDP_ENCAP values are chosen at run time from NAT detection.
    encapsulation = plain_mode(mode) if mode is not None else EncapsulationMode.TUNNEL
    key_length = _get(store, name, "KEY_LENGTH")
    if key_length is not None and not is_any(key_length):
        try:
            parse_offer(key_length)
        except ValueError as error:
            raise _config_error(f"[{name}] KEY_LENGTH: {error}") from None
    return _P2XfConfig(name, transform_id, encapsulation,
                       _conf_enum(store, name, "AUTHENTICATION_ALGORITHM", AuthAlgorithm),
                       _conf_enum(store, name, "GROUP_DESCRIPTION", GroupDescription),
                       key_length, _life_rules(store, name))


def _p2_suites(store: Store, connection: str) -> list[_P2SuiteConfig]:
    return store.memo(("p2-suites", connection.lower()),
                      lambda: _read_p2_suites(store, connection))


def _read_p2_suites(store: Store, connection: str) -> list[_P2SuiteConfig]:
    if not store.has(connection):
        raise _config_error(f"IPsec connection [{connection}] does not exist")
    config = _get(store, connection, "Configuration")
    if not config:
        raise _config_error(f"[{connection}] has no Configuration")
    if not store.has(config):
        raise _config_error(f"[{connection}] Configuration names [{config}], which does not "
                            "exist")
    names = store.get_list(config, "Suites")
    if not names:
        raise _config_error(f"[{config}] has no Suites")
    suites: list[_P2SuiteConfig] = []
    for suite_name in names:
        if not store.has(suite_name):
            raise _config_error(f"IPsec suite [{suite_name}] does not exist")
        protocols: list[_P2ProtoConfig] = []
        for proto_name in store.get_list(suite_name, "Protocols"):
            if not store.has(proto_name):
                raise _config_error(f"IPsec protocol [{proto_name}] does not exist")
            proto = _conf_enum(store, proto_name, "PROTOCOL_ID", ProtocolId)
            if proto not in (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH, ProtocolId.IPCOMP):
                raise _config_error(f"[{proto_name}] PROTOCOL_ID must be IPSEC_ESP, "
                                    "IPSEC_AH or IPCOMP")
            protocol = ProtocolId(proto)                          # type: ignore[arg-type]
            xf_names = store.get_list(proto_name, "Transforms")
            if not xf_names:
                raise _config_error(f"[{proto_name}] has no Transforms")
            window = store.get_num(proto_name, "ReplayWindow", DEFAULT_REPLAY_WINDOW)
            protocols.append(_P2ProtoConfig(
                proto_name, protocol, window,
                [_p2_transform(store, xf, protocol) for xf in xf_names]))
        if not protocols:
            raise _config_error(f"[{suite_name}] has no Protocols")
        _check_ipcomp_suite(suite_name, protocols)
        suites.append(_P2SuiteConfig(suite_name, protocols))
    return suites


def _check_ipcomp_suite(name: str, protocols: list[_P2ProtoConfig]) -> None:
    """IPCOMP once, with at most one of ESP and AH: the bundles Linux takes as
    IPComp + ESP/AH (strongSwan's kernel-netlink builds the same)."""
    kinds = [proto.protocol for proto in protocols]
    if ProtocolId.IPCOMP not in kinds:
        return
    if kinds.count(ProtocolId.IPCOMP) > 1 or len(kinds) > 2:
        raise _config_error(f"[{name}] combines {'+'.join(k.label for k in kinds)}; IPCOMP "
                            "goes alone or with one of IPSEC_ESP and IPSEC_AH")


def _p2_attributes(xf: _P2XfConfig, nat_t: bool, draft: bool) -> list[Attribute]:
    attributes = _life_attributes(xf.lives, IpsecAttr.SA_LIFE_TYPE,
                                  IpsecAttr.SA_LIFE_DURATION, xf.name)
    for tag, value in (("GROUP_DESCRIPTION", xf.group),
                       ("AUTHENTICATION_ALGORITHM", xf.auth)):
        if value is _ANY:
            raise _config_error(f"[{xf.name}] {tag}=ANY can be accepted but not offered")
    if xf.group is not None:
        attributes.append(Attribute(IpsecAttr.GROUP_DESCRIPTION, int(xf.group)))  # type: ignore
    attributes.append(Attribute(IpsecAttr.ENCAPSULATION_MODE,
                                int(encapsulation_for(xf.encapsulation, nat_t, draft))))
    if xf.auth is not None:
        attributes.append(Attribute(IpsecAttr.AUTHENTICATION_ALGORITHM,
                                    int(xf.auth)))                         # type: ignore
    if xf.key_length is not None:
        if is_any(xf.key_length):
            raise _config_error(f"[{xf.name}] KEY_LENGTH=ANY can be accepted but not offered")
        attributes.append(Attribute(IpsecAttr.KEY_LENGTH, offered_value(xf.key_length)))
    return attributes


def quick_mode_offer(store: Store, connection: str, spi_for: Callable[[ProtocolId], bytes],
                     nat_t: bool, *, nat_t_draft: bool = False
                     ) -> tuple[SaPayload, int | None]:
    """The initiator's Quick Mode SA payload and its PFS group (None: no PFS).

    ``spi_for`` is called once per protocol; ``nat_t_draft`` (optional) picks the draft
    UDP_ENCAP values instead of RFC 3947's.
    """
    suites = _p2_suites(store, connection)
    spis: dict[ProtocolId, bytes] = {}
    groups: set[int | None] = set()
    proposals: list[ProposalPayload] = []
    for number, suite in enumerate(suites, 1):
        for proto in suite.protocols:
            if proto.protocol not in spis:
                spis[proto.protocol] = bytes(spi_for(proto.protocol))
            transforms: list[TransformPayload] = []
            for xf_number, xf in enumerate(proto.transforms, PHASE_2_FIRST_TRANSFORM):
                if xf.transform_id is _ANY:
                    raise _config_error(f"[{xf.name}] TRANSFORM_ID=ANY can be accepted but "
                                        "not offered")
                if proto.protocol != ProtocolId.IPCOMP or xf.group is not None:
                    groups.add(None if xf.group is None else int(xf.group))  # type: ignore
                transforms.append(TransformPayload(xf_number, int(xf.transform_id),  # type: ignore
                                                   _p2_attributes(xf, nat_t, nat_t_draft)))
            proposals.append(ProposalPayload(number, proto.protocol, spis[proto.protocol],
                                             transforms))
    if len(groups) > 1:
        names = ", ".join("no PFS" if g is None else GroupDescription.describe(g)
                          for g in sorted(groups, key=lambda g: -1 if g is None else g))
        raise _config_error(f"the suites of connection {connection} must all use the same "
                            f"PFS group (RFC 2409 §5.5: one KE payload), but they use {names}")
    return (SaPayload(Doi.IPSEC, Situation.IDENTITY_ONLY, proposals),
            groups.pop() if groups else None)


@dataclass
class _P2Offered:
    """A received phase 2 transform, read attribute by attribute."""

    protocol: int
    transform: TransformPayload
    encapsulation: int | None = None
    auth: int | None = None
    group: int | None = None
    key_length: int | None = None
    lives: list[tuple[int, int]] = field(default_factory=list)
    problem: str | None = None

    def describe(self) -> str:
        kind = _TRANSFORM_KINDS.get(self.protocol, EspTransform)
        key = str(self.key_length) if self.key_length is not None else None
        tid = self.transform.transform_id
        if self.protocol == ProtocolId.IPSEC_ESP:
            text = _short_cipher(_ESP_SHORT, kind, tid, key)
        else:
            text = kind.describe(tid)
        if self.auth is not None:
            text += "/" + AuthAlgorithm.describe(self.auth)
        text += "/" + ("no PFS" if self.group is None
                       else "PFS " + GroupDescription.describe(self.group))
        return f"{ProtocolId.describe(self.protocol).removeprefix('IPSEC_')}:{text}"


_P2_KNOWN = {IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION, IpsecAttr.GROUP_DESCRIPTION,
             IpsecAttr.ENCAPSULATION_MODE, IpsecAttr.AUTHENTICATION_ALGORITHM,
             IpsecAttr.KEY_LENGTH}


_ENCAPSULATIONS = frozenset(int(mode) for mode in EncapsulationMode)


def _read_p2(protocol: int, transform: TransformPayload) -> _P2Offered:
    offered = _P2Offered(protocol, transform)
    try:
        _fill_p2(offered)
    except DecodeError as error:
        offered.problem = error.message
    return offered


def _fill_p2(offered: _P2Offered) -> None:
    for attribute in offered.transform.attributes:
        kind = attribute.type
        if kind not in _P2_KNOWN:
            # KEY_ROUNDS, COMPRESS_*, ECN_TUNNEL and unknown ones (inventory §3.2).
            offered.problem = f"attribute {IpsecAttr.describe(kind)} is not supported"
            return
        if kind in (IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION):
            continue
        value = attribute.as_int()
        if kind == IpsecAttr.ENCAPSULATION_MODE:
            offered.encapsulation = value
        elif kind == IpsecAttr.AUTHENTICATION_ALGORITHM:
            offered.auth = value
        elif kind == IpsecAttr.GROUP_DESCRIPTION:
            offered.group = value
        elif kind == IpsecAttr.KEY_LENGTH:
            offered.key_length = value
    offered.lives, problem = _read_lives(offered.transform, IpsecAttr.SA_LIFE_TYPE,
                                         IpsecAttr.SA_LIFE_DURATION)
    if problem:
        offered.problem = problem
        return
    if offered.encapsulation is not None and offered.encapsulation not in _ENCAPSULATIONS:
        offered.problem = f"encapsulation mode {offered.encapsulation} is unknown"
        return
    if offered.auth is not None and offered.auth not in SUPPORTED_AUTH_ALG:
        offered.problem = (f"authentication algorithm {AuthAlgorithm.describe(offered.auth)} "
                           "is not supported")
        return
    if offered.group is not None and offered.group not in SUPPORTED_GROUPS:
        offered.problem = f"group {GroupDescription.describe(offered.group)} is not supported"
        return
    tid = offered.transform.transform_id
    try:
        if offered.protocol == ProtocolId.IPSEC_ESP:
            esp_layout(tid, offered.key_length, offered.auth)
        elif offered.protocol == ProtocolId.IPSEC_AH:
            if offered.auth is None:
                # isakmpd: an AH proposal needs AUTHENTICATION_ALGORITHM (§3.2).
                offered.problem = "AH without AUTHENTICATION_ALGORITHM"
                return
            ah_layout(tid, offered.auth)
        elif offered.protocol == ProtocolId.IPCOMP:
            if tid not in SUPPORTED_IPCOMP:
                offered.problem = (f"IPCOMP transform {IpcompTransform.describe(tid)} cannot "
                                   "be installed (Linux compresses with DEFLATE and LZS)")
            elif offered.auth is not None or offered.key_length is not None:
                offered.problem = "IPCOMP with AUTHENTICATION_ALGORITHM or KEY_LENGTH"
        else:
            offered.problem = f"protocol {ProtocolId.describe(offered.protocol)} is not " \
                              "supported"
    except CryptoError as error:
        offered.problem = str(error)


def _pfs_free(read: _P2Offered) -> bool:
    """An IPCOMP transform without GROUP_DESCRIPTION says nothing about PFS."""
    return read.protocol == ProtocolId.IPCOMP and read.group is None


def _p2_compare(offered: _P2Offered, xf: _P2XfConfig, nat_t: bool
                ) -> tuple[int, str | None, _LifeCheck]:
    checks: list[tuple[bool, Callable[[], str]]] = []
    kind = _TRANSFORM_KINDS.get(offered.protocol, EspTransform)
    tid = offered.transform.transform_id
    checks.append((xf.transform_id is _ANY or int(xf.transform_id) == tid,  # type: ignore
                   lambda: (f"transform differs ({kind.describe(tid)}, we accept "
                            f"{kind.describe(xf.transform_id)})")))         # type: ignore
    default = (ESP_DEFAULT_KEY_BITS.get(tid)                                 # type: ignore
               if offered.protocol == ProtocolId.IPSEC_ESP else None)
    key_ok, key_reason = _key_length_ok(xf.key_length, offered.key_length, default)
    checks.append((key_ok, lambda: key_reason))
    checks.append((xf.auth is _ANY or (None if xf.auth is None else int(xf.auth))  # type: ignore
                   == offered.auth,
                   lambda: (f"authentication algorithm differs "
                            f"({_name(AuthAlgorithm, offered.auth)}, we accept "
                            f"{_name(AuthAlgorithm, xf.auth)})")))          # type: ignore
    mode_reason = _mode_reason(offered.encapsulation, xf.encapsulation, nat_t)
    checks.append((mode_reason is None, lambda: str(mode_reason)))
    group = None if xf.group is None or xf.group is _ANY else int(xf.group)  # type: ignore
    # An IPCOMP transform of ours without a group follows the ESP/AH one's PFS.
    free = offered.protocol == ProtocolId.IPCOMP and xf.group is None
    checks.append((xf.group is _ANY or free or group == offered.group,
                   lambda: _pfs_reason(offered.group, group)))
    lives = _match_lives(offered.lives, xf.lives)
    checks.append((lives.reason is None, lambda: str(lives.reason)))
    score = 0
    reason = None
    for ok, why in checks:
        if ok:
            score += 1
        elif reason is None:
            reason = why()
    return score, reason, lives


def _pfs_reason(offered: int | None, ours: int | None) -> str:
    if offered is None:
        wanted = GroupDescription.describe(ours)                        # type: ignore
        return f"PFS differs (no PFS offered, we require {wanted})"
    if ours is None:
        return (f"PFS differs ({GroupDescription.describe(offered)} offered, we accept "
                "no PFS)")
    return (f"PFS group differs ({GroupDescription.describe(offered)}, we accept "
            f"{GroupDescription.describe(ours)})")


def _mode_reason(offered: int | None, ours: EncapsulationMode, nat_t: bool) -> str | None:
    if offered is None:
        # RFC 2407 §4.5 leaves an absent mode to the host; ours is tunnel by default.
        return None if ours == EncapsulationMode.TUNNEL else (
            f"encapsulation mode differs (none offered, we accept {ours.label})")
    mode = EncapsulationMode(offered)
    plain = plain_mode(mode)
    if plain != mode and not nat_t:
        return (f"encapsulation mode {mode.label} offered, but no NAT was detected "
                "(RFC 3947 §5.1)")
    if plain != ours:
        return f"encapsulation mode differs ({mode.label}, we accept {ours.label})"
    return None


def _groups(proposals: list[ProposalPayload]) -> list[list[ProposalPayload]]:
    """Proposals with the same number form one AND-ed suite (RFC 2408 §4.2)."""
    grouped: list[list[ProposalPayload]] = []
    for proposal in proposals:
        if grouped and grouped[-1][0].number == proposal.number:
            grouped[-1].append(proposal)
        else:
            grouped.append([proposal])
    return grouped


def _describe_p2_config(suite: _P2SuiteConfig) -> str:
    parts = []
    for proto in suite.protocols:
        alternatives = []
        for xf in proto.transforms:
            kind = _TRANSFORM_KINDS[proto.protocol]
            key = _range_text(xf.key_length) if xf.key_length is not None else None
            tid = None if xf.transform_id is _ANY else xf.transform_id
            if proto.protocol == ProtocolId.IPSEC_ESP:
                text = _short_cipher(_ESP_SHORT, kind, tid, key)         # type: ignore
            else:
                text = "ANY" if tid is None else kind.describe(tid)      # type: ignore
            if xf.auth is _ANY:
                text += "/ANY"
            elif xf.auth is not None:
                text += "/" + AuthAlgorithm.describe(xf.auth)            # type: ignore
            if xf.group is _ANY:
                text += "/PFS ANY"
            else:
                text += "/" + ("no PFS" if xf.group is None
                               else "PFS " + GroupDescription.describe(xf.group))  # type: ignore
            alternatives.append(text)
        short = proto.protocol.label.removeprefix("IPSEC_")
        parts.append(f"{short}:" + "|".join(alternatives))
    return "+".join(parts)


def _describe_p2_offer(group: list[ProposalPayload]) -> str:
    parts = []
    for proposal in group:
        reads = [_read_p2(proposal.protocol_id, t) for t in proposal.transforms]
        short = ProtocolId.describe(proposal.protocol_id).removeprefix("IPSEC_")
        parts.append(short + ":" + "|".join(r.describe().split(":", 1)[1] for r in reads))
    return "+".join(parts)


def quick_mode_select(store: Store, connection: str, offered: SaPayload,
                      spi_for: Callable[[ProtocolId], bytes], peer: str, nat_t: bool
                      ) -> tuple[SaPayload, Phase2Suite]:
    """Responder: the first offered proposal (in the peer's order) that one of the
    connection's configured suites allows (DESIGN.md §4).

    The reply SA holds the chosen proposal's protocols, each with our SPI
    (``spi_for``, called only for the chosen protocols) and the chosen transform as
    received. Raises :class:`NegotiationError` (NO_PROPOSAL_CHOSEN).
    """
    # Peers offer the same proposals again and again (every rekey, every tunnel of
    # a gateway with one configuration): the choice, which depends on the offer's
    # transforms and not on its SPIs, is remembered until the configuration changes.
    shape = ("qm-select", connection.lower(), nat_t, _offer_shape(offered))
    plan = store.memo(shape, lambda: _selection_plan(store, connection, offered, nat_t))
    if plan is not None:
        planned, text = plan
        return _planned_choice(offered.proposals, planned, spi_for, text)
    suites = _p2_suites(store, connection)
    best: tuple[int, str] | None = None
    for group in _groups(offered.proposals):
        protocols = [proposal.protocol_id for proposal in group]
        for suite in suites:
            ours = [proto.protocol for proto in suite.protocols]
            if sorted(protocols) != sorted(ours):
                candidate = (-1, "protocols differ ("
                             + "+".join(ProtocolId.describe(p) for p in protocols)
                             + " offered, we accept "
                             + "+".join(p.label for p in ours) + ")")
                if best is None:
                    best = candidate
                continue
            picks = _pick_protocols(group, suite, nat_t)
            if isinstance(picks, tuple):
                score, reason = picks
                if best is None or score > best[0]:
                    best = (score, reason)
                continue
            return _build_choice(picks, spi_for)
    offered_text = _summary([_describe_p2_offer(g) for g in _groups(offered.proposals)])
    ours_text = _summary([_describe_p2_config(s) for s in suites])
    why = best[1] if best is not None else "nothing was offered"
    raise NegotiationError(_NOTIFY, f"peer {peer} offered {offered_text}, we accept "
                                    f"{ours_text} for connection {connection}: {why}")


def _offer_shape(offered: SaPayload) -> tuple[object, ...]:
    """What selection depends on: proposal numbers, protocols, transforms (no SPIs)."""
    # Plain loops: every Quick Mode makes it, and a generator is a frame per item.
    shape: list[tuple[object, ...]] = []
    for proposal in offered.proposals:
        transforms: list[tuple[int, bytes]] = []
        for transform in proposal.transforms:
            raw = transform.raw
            transforms.append((transform.number,
                               raw if raw is not None else transform.encode_body()))
        shape.append((proposal.number, int(proposal.protocol_id), tuple(transforms)))
    return tuple(shape)


# Per chosen protocol, everything of the choice that does not depend on the offer's
# SPIs: (index of its proposal in the offer, protocol, the received transform (sent
# back as received, RFC 2408 §4.2), transform ID, mode, AUTHENTICATION_ALGORITHM,
# KEY_LENGTH, lifetime seconds, kilobytes, replay window).
_PlannedProtocol = tuple[int, ProtocolId, TransformPayload, int, EncapsulationMode,
                         int | None, int | None, int | None, int | None, int]
# The planned protocols, whether a lifetime was shortened, the PFS group and the
# chosen proposal number.
_Planned = tuple[tuple[_PlannedProtocol, ...], bool, int | None, int]


def _selection_plan(store: Store, connection: str, offered: SaPayload, nat_t: bool
                    ) -> tuple[_Planned, str] | None:
    """The choice for an offer of this shape (indices into ``offered.proposals``)
    and the chosen suite's describe() text, which names no SPI; None when nothing
    is acceptable (the caller then finds the reason)."""
    suites = _p2_suites(store, connection)
    for group in _groups(offered.proposals):
        protocols = sorted(proposal.protocol_id for proposal in group)
        for suite in suites:
            if protocols != sorted(proto.protocol for proto in suite.protocols):
                continue
            picks = _pick_protocols(group, suite, nat_t)
            if isinstance(picks, tuple):
                continue
            planned = _plan_picks(picks, offered.proposals)
            text = _planned_choice(offered.proposals, planned, lambda _protocol: b"",
                                   None)[1].describe()
            return planned, text
    return None


@dataclass
class _Pick:
    proposal: ProposalPayload
    read: _P2Offered
    proto: _P2ProtoConfig
    lives: _LifeCheck
    mode: EncapsulationMode


def _pick_protocols(group: list[ProposalPayload], suite: _P2SuiteConfig, nat_t: bool
                    ) -> list[_Pick] | tuple[int, str]:
    """For each offered protocol, its first transform our suite accepts; or the best
    (score, reason) of the failure."""
    picks: list[_Pick] = []
    used: set[int] = set()
    total = 0
    for proposal in group:
        proto = next((p for i, p in enumerate(suite.protocols)
                      if p.protocol == proposal.protocol_id and i not in used), None)
        assert proto is not None            # the protocol lists were compared
        used.add(suite.protocols.index(proto))
        best: tuple[int, str] | None = None
        found: _Pick | None = None
        for transform in proposal.transforms:
            read = _read_p2(proposal.protocol_id, transform)
            if read.problem is not None:
                if best is None:
                    best = (-1, f"transform {transform.number}: {read.problem}")
                continue
            for xf in proto.transforms:
                score, reason, lives = _p2_compare(read, xf, nat_t)
                if reason is None:
                    mode = (xf.encapsulation if read.encapsulation is None
                            else plain_mode(read.encapsulation))
                    found = _Pick(proposal, read, proto, lives, mode)
                    break
                if best is None or score > best[0]:
                    best = (score, reason)                                   # type: ignore
            if found is not None:
                break
        if found is None:
            assert best is not None
            return total + best[0], best[1]
        total += 10
        picks.append(found)
    groups = {pick.read.group for pick in picks if not _pfs_free(pick.read)}
    if len(groups) > 1:
        return total, "the protocols of the proposal use different PFS groups"
    return picks


def _build_choice(picks: list[_Pick], spi_for: Callable[[ProtocolId], bytes]
                  ) -> tuple[SaPayload, Phase2Suite]:
    proposals = [pick.proposal for pick in picks]
    return _planned_choice(proposals, _plan_picks(picks, proposals), spi_for, None)


def _plan_picks(picks: list[_Pick], proposals: list[ProposalPayload]) -> _Planned:
    """What the choice of ``picks`` takes from them, each proposal named by its index
    in ``proposals``."""
    planned: list[_PlannedProtocol] = []
    for pick in picks:
        read = pick.read
        index = next(i for i, proposal in enumerate(proposals) if proposal is pick.proposal)
        planned.append((index, member(ProtocolId, pick.proposal.protocol_id), read.transform,
                        int(read.transform.transform_id), pick.mode, read.auth,
                        read.key_length, pick.lives.seconds, pick.lives.kilobytes,
                        pick.proto.replay_window))
    pfs = next((pick.read.group for pick in picks if not _pfs_free(pick.read)), None)
    return (tuple(planned), any(pick.lives.shortened for pick in picks), pfs,
            picks[0].proposal.number)


_IPSEC_DOI = Doi.IPSEC
_IDENTITY_ONLY = Situation.IDENTITY_ONLY


def _planned_choice(proposals: list[ProposalPayload], plan: _Planned,
                    spi_for: Callable[[ProtocolId], bytes], text: str | None
                    ) -> tuple[SaPayload, Phase2Suite]:
    """The reply SA and the suite of ``plan`` for the offer's ``proposals``: our SPI
    (``spi_for``) and the peer's are all that differ between offers of one shape, so
    every Quick Mode does only this (``text``: the suite's describe(), when known)."""
    planned, shortened, pfs, number = plan
    reply_proposals: list[ProposalPayload] = []
    choices: list[ProtocolChoice] = []
    for (index, protocol, received, transform_id, mode, auth, key_length, seconds,
         kilobytes, replay_window) in planned:
        proposal = proposals[index]
        our_spi = bytes(spi_for(protocol))
        # Sent back as received (RFC 2408 §4.2).
        reply_proposals.append(ProposalPayload(proposal.number, protocol, our_spi,
                                               [received.echo()]))
        choices.append(ProtocolChoice(
            protocol, transform_id, mode, auth, key_length, seconds, kilobytes, our_spi,
            bytes(proposal.spi), replay_window))
    suite = Phase2Suite(tuple(choices), pfs, shortened, number)
    suite._text = text          # what describe() would make (the SA's log lines)
    return SaPayload(_IPSEC_DOI, _IDENTITY_ONLY, reply_proposals), suite


def _p2_reply_matches(mine: _P2Offered, reply: _P2Offered) -> tuple[bool, _LifeCheck]:
    result = _LifeCheck()
    if int(mine.transform.transform_id) != int(reply.transform.transform_id):
        return False, result
    mine_mode = None if mine.encapsulation is None else plain_mode(mine.encapsulation)
    reply_mode = None if reply.encapsulation is None else plain_mode(reply.encapsulation)
    if ((mine.auth, mine.group, mine.key_length) != (reply.auth, reply.group,
                                                      reply.key_length)
            or (reply_mode is not None and reply_mode != mine_mode)):
        return False, result
    offered = dict(mine.lives)
    for life_type, duration in reply.lives:
        if life_type not in offered or duration > offered[life_type]:
            return False, result
    chosen = dict(mine.lives)
    chosen.update(reply.lives)
    result.seconds = chosen.get(LifeType.SECONDS)
    result.kilobytes = chosen.get(LifeType.KILOBYTES)
    return True, result


def quick_mode_accept(offer: SaPayload, reply: SaPayload, peer: str, *,
                      replay_windows: Mapping[int, int] | None = None) -> Phase2Suite:
    """Initiator: the responder's SA must be one of our proposals with one of its
    transforms per protocol (lifetimes may be shorter, never longer). Only its first
    proposal counts (see below).

    ``replay_windows`` (optional) maps a protocol to its configured ReplayWindow
    (default 16). Raises :class:`NegotiationError` (NO_PROPOSAL_CHOSEN).
    """
    def refuse(why: str) -> NegotiationError:
        answered = _describe_p2_offer(reply.proposals) or "nothing"
        ours = _summary([_describe_p2_offer(g) for g in _groups(offer.proposals)])
        return NegotiationError(_NOTIFY, f"peer {peer} answered Quick Mode with {answered}, "
                                         f"which is not one of our proposals ({ours}): {why}")

    groups = _groups(reply.proposals)
    if not groups:
        raise refuse("no proposal chosen")
    # RFC 2408 §4.2 wants exactly one proposal back; strongSwan's charon answers an
    # ESP+IPCOMP proposal with it AND an ESP-only fallback of its own (sa_payload.c
    # adds one whenever it has a CPI). The first one is the choice; the rest is
    # ignored (the caller logs it).
    chosen = groups[0]
    ours = [g for g in _groups(offer.proposals) if g[0].number == chosen[0].number]
    if not ours:
        raise refuse(f"we made no proposal number {chosen[0].number}")
    mine_group = ours[0]
    if sorted(p.protocol_id for p in mine_group) != sorted(p.protocol_id for p in chosen):
        raise refuse("the protocols differ")
    choices: list[ProtocolChoice] = []
    groups_seen: set[int | None] = set()
    remaining = list(mine_group)
    for proposal in chosen:
        if len(proposal.transforms) != 1:
            raise refuse(f"{len(proposal.transforms)} transforms chosen for "
                         f"{ProtocolId.describe(proposal.protocol_id)}")
        mine = next(p for p in remaining if p.protocol_id == proposal.protocol_id)
        remaining.remove(mine)
        read = _read_p2(proposal.protocol_id, proposal.transforms[0])
        if read.problem is not None:
            raise refuse(read.problem)
        match = None
        candidates = sorted(mine.transforms,
                            key=lambda t: t.number != proposal.transforms[0].number)
        for transform in candidates:
            ok, lives = _p2_reply_matches(_read_p2(mine.protocol_id, transform), read)
            if ok:
                match = (_read_p2(mine.protocol_id, transform), lives)
                break
        if match is None:
            raise refuse(f"{read.describe()} is not one of our transforms")
        ours_read, lives = match
        if not _pfs_free(read):
            groups_seen.add(read.group)
        mode = (EncapsulationMode.TUNNEL if ours_read.encapsulation is None
                else plain_mode(ours_read.encapsulation))
        window = (replay_windows or {}).get(int(proposal.protocol_id), DEFAULT_REPLAY_WINDOW)
        choices.append(ProtocolChoice(
            ProtocolId(proposal.protocol_id), int(read.transform.transform_id), mode,
            read.auth, read.key_length, lives.seconds, lives.kilobytes, bytes(mine.spi),
            bytes(proposal.spi), window))
    if len(groups_seen) > 1:
        raise refuse("the chosen transforms use different PFS groups")
    return Phase2Suite(tuple(choices), groups_seen.pop() if groups_seen else None, False,
                       chosen[0].number)


# --- phase 2 IDs and connections -------------------------------------------------------


def _ipsec_id(store: Store, section: str) -> IdPayload:
    try:
        return _section_id(store, section, 2)
    except ids.IdError as error:
        raise NegotiationError(NotifyType.INVALID_ID_INFORMATION,
                               f"configuration error: {error}") from None


def connection_peer(store: Store, connection: str) -> str:
    """The connection's ISAKMP-peer section. Raises :class:`NegotiationError`."""
    peer = _get(store, connection, "ISAKMP-peer")
    if not peer:
        raise _config_error(f"[{connection}] has no ISAKMP-peer")
    return peer


def connection_ids(store: Store, connection: str, local_ip: str
                   ) -> tuple[IdPayload, IdPayload] | None:
    """(IDci, IDcr) for an initiator (inventory §4.5): Local-ID and Remote-ID; with
    only Remote-ID our address is the local ID; otherwise no IDs are sent (None)."""
    remote = _get(store, connection, "Remote-ID")
    if not remote:
        return None
    local = _get(store, connection, "Local-ID")
    local_id = _ipsec_id(store, local) if local else IdPayload.from_address(local_ip)
    return local_id, _ipsec_id(store, remote)


def _passive_candidates(store: Store) -> list[str]:
    return store.memo(("passive-candidates",), lambda: _read_passive_candidates(store))


def _read_passive_candidates(store: Store) -> list[str]:
    names: list[str] = []
    for name in store.get_list("Phase 2", "Passive-connections"):
        if name.lower() not in (n.lower() for n in names):
            names.append(name)
    for name in store.get_list("Phase 2", "Connections"):
        flags = [flag.lower() for flag in store.get_list(name, "Flags")]
        if "active-only" in flags:
            continue
        if name.lower() not in (n.lower() for n in names):
            names.append(name)
    # Dynamic connections made from kernel ACQUIREs (isakmpd.ike.ondemand): the peer
    # may rekey them, or start them itself for the same policy, and we answer.
    sections = store.get_section_names()
    # The configuration holds some 12,000 sections (the built-in suites); one
    # lower() of them all, in C, says whether any can be such a connection.
    if "connection-" not in "\n".join(sections).lower():
        return names
    for name in sections:
        if (name.lower().startswith("connection-")
                and "__ondemand" in (f.lower() for f in store.get_list(name, "Flags"))
                and name.lower() not in (n.lower() for n in names)):
            names.append(name)
    return names


def find_passive_connection(store: Store, peer_section_or_none: str | None,
                            idci: IdPayload | None, idcr: IdPayload | None,
                            local_ip: str, remote_ip: str, *, nat_t: bool = False
                            ) -> str | None:
    """Responder: the connection whose Remote-ID matches IDci and Local-ID matches IDcr.

    Candidates are ``[Phase 2]`` Passive-connections, then Connections (unless
    ``Flags=active-only``), then the dynamic connections of kernel ACQUIREs. Without IDs the peers' addresses stand in (inventory §4.5).
    A connection naming another ISAKMP-peer than ``peer_section_or_none`` is skipped. A
    connection without Remote-ID accepts the peer's own address only (or, with
    ``nat_t``, any single host, the peer's address before NAT); without Local-ID it is
    not passive.
    """
    if idci is None or idcr is None:
        idci = IdPayload.from_address(remote_ip)
        idcr = IdPayload.from_address(local_ip)
    # The candidates the IDs select depend on the configuration only, and are
    # remembered; whether one without Remote-ID takes this peer depends on its
    # address, checked every time (a memo per peer address would grow with the
    # number of peers).
    # (_id_key() of both written out: this runs for every Quick Mode)
    key = ("passive", peer_section_or_none,
           (int(idci.id_type), bytes(idci.data), idci.protocol, idci.port),
           (int(idcr.id_type), bytes(idcr.data), idcr.protocol, idcr.port))
    matches = store.memo(key, lambda: _passive_matches(store, peer_section_or_none, idci,
                                                       idcr))
    for name, needs_address in matches:
        if not needs_address:
            return name
        if nat_t or ids.id_is_address(idci, remote_ip):
            return name
    return None


def _id_key(payload: IdPayload) -> tuple[int, bytes, int, int]:
    return int(payload.id_type), bytes(payload.data), payload.protocol, payload.port


def _passive_matches(store: Store, peer_section_or_none: str | None, idci: IdPayload,
                     idcr: IdPayload) -> tuple[tuple[str, bool], ...]:
    """The passive connections whose IDs fit, in order, each with whether it still
    needs the peer's address to match IDci (it has no Remote-ID)."""
    # The part that depends on IDcr alone (every peer of a gateway sends the same
    # one) is remembered on its own, so a new peer's IDci costs only this loop.
    plan = store.memo(("passive-plan", peer_section_or_none, _id_key(idcr)),
                      lambda: _passive_plan(store, peer_section_or_none, idcr))
    matches: list[tuple[str, bool]] = []
    for name, remote_id in plan:
        if remote_id is not None:
            if ids.ids_match(remote_id, idci):
                matches.append((name, False))
            continue
        if ids.id_is_host(idci):
            matches.append((name, True))
    return tuple(matches)


def _passive_plan(store: Store, peer_section_or_none: str | None, idcr: IdPayload
                  ) -> tuple[tuple[str, IdPayload | None], ...]:
    """The passive connections whose ISAKMP-peer and Local-ID fit, in order, each
    with its Remote-ID (None: it has none)."""
    plan: list[tuple[str, IdPayload | None]] = []
    for name in _passive_candidates(store):
        if not store.has(name):
            continue
        peer = _get(store, name, "ISAKMP-peer")
        if (peer and peer_section_or_none is not None
                and peer.lower() != peer_section_or_none.lower()):
            continue
        local = _get(store, name, "Local-ID")
        if not local:
            continue
        try:
            local_id = _section_id(store, local, 2)
            remote = _get(store, name, "Remote-ID")
            remote_id = _section_id(store, remote, 2) if remote else None
        except ids.IdError:
            continue
        if not ids.ids_match(local_id, idcr):
            continue
        plan.append((name, remote_id))
    return tuple(plan)
