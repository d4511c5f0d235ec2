"""The configuration isakmpd has before reading any file (inventory §2.2, §2.3, §2.5).

Owns the generated defaults: the ``[General]``, ``[X509-certificates]`` and
``[KeyNote]`` values, the two lifetime sections, the default phase 1 peer and
configuration, and the named Main Mode transforms and Quick Mode suites users
refer to (``AES-256-SHA2-256-GRP14``, ``QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE``).

:func:`generate` yields ``(section, tag, value)`` triples; the store inserts each
one only where the tag is not already set, so a user section with a generated
name overrides it tag by tag and defaults never override anything.

Where we differ from OpenBSD (DESIGN.md §4):

* ``-PFS`` suites always carry their group, AES-GCM/GMAC suites included (the
  original writes GROUP_DESCRIPTION only when the suite has a hash, so
  ``QM-ESP-AESGCM-256-PFS-SUITE`` silently had no PFS);
* group 25 (ECP_192) was removed upstream and is not generated.

DSS: ``-DSS`` Main Mode names *are* generated, as the original does, so a
configuration written for OpenBSD still loads and refers to existing sections;
DSS authentication is not supported, so :mod:`isakmpd.config.validate` reports
every use of such a transform as an error naming AUTHENTICATION_METHOD=DSS, and
negotiation refuses it with a log line naming the attribute.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache

__all__ = [
    "DEFAULT_PHASE_1_LIFETIME",
    "DEFAULT_PHASE_2_LIFETIME",
    "GENERAL_DEFAULTS",
    "GROUPS",
    "KEYNOTE_DEFAULTS",
    "MM_AUTHS",
    "MM_CIPHERS",
    "MM_HASHES",
    "QM_CIPHERS",
    "QM_HASHES",
    "X509_DEFAULTS",
    "generate",
    "generated_section_names",
    "main_mode_transform_names",
    "quick_mode_suite_names",
]

Lookup = Callable[[str, str], "str | None"]
Triple = tuple[str, str, str]

DEFAULT_PHASE_1_LIFETIME = "3600,60:86400"
DEFAULT_PHASE_2_LIFETIME = "1200,60:86400"

# [General] values the code would otherwise fall back to; inserted so `C get`
# and reports show them (inventory §2.2).
GENERAL_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Check-interval", "60"),
    ("Default-phase-1-lifetime", DEFAULT_PHASE_1_LIFETIME),
    ("Default-phase-2-lifetime", DEFAULT_PHASE_2_LIFETIME),
    ("Default-phase-2-suites", "QM-ESP-3DES-SHA-PFS-SUITE"),
    ("Exchange-max-time", "120"),
    ("NAT-T-Keepalive", "20"),
    ("Policy-file", "/etc/isakmpd/isakmpd.policy"),
    ("Pubkey-directory", "/etc/isakmpd/pubkeys/"),
    ("Retransmits", "3"),
    ("Use-Keynote", "yes"),
)

X509_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("CA-directory", "/etc/isakmpd/ca/"),
    ("Cert-directory", "/etc/isakmpd/certs/"),
    ("CRL-directory", "/etc/isakmpd/crls/"),
    ("Private-key", "/etc/isakmpd/private/local.key"),
    ("Private-key-directory", "/etc/isakmpd/private/"),
)

KEYNOTE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Credential-directory", "/etc/isakmpd/keynote/"),
)

# Main Mode name part -> (ENCRYPTION_ALGORITHM, KEY_LENGTH or None).
MM_CIPHERS: tuple[tuple[str, str, str | None], ...] = (
    ("BLF", "BLOWFISH_CBC", "128,96:192"),
    ("3DES", "3DES_CBC", None),
    ("CAST", "CAST_CBC", None),
    ("AES", "AES_CBC", "128,128:256"),
    ("AES-128", "AES_CBC", "128,128:128"),
    ("AES-192", "AES_CBC", "192,192:192"),
    ("AES-256", "AES_CBC", "256,256:256"),
)

# Main Mode name part -> HASH_ALGORITHM.
MM_HASHES: tuple[tuple[str, str], ...] = (
    ("MD5", "MD5"),
    ("SHA", "SHA"),
    ("SHA2-256", "SHA2_256"),
    ("SHA2-384", "SHA2_384"),
    ("SHA2-512", "SHA2_512"),
)

# Name part -> GROUP_DESCRIPTION, for both phases.  GRP25 (ECP_192) is gone.
GROUPS: tuple[tuple[str, str], ...] = (
    ("GRP1", "MODP_768"),
    ("GRP2", "MODP_1024"),
    ("GRP5", "MODP_1536"),
    ("GRP14", "MODP_2048"),
    ("GRP15", "MODP_3072"),
    ("GRP16", "MODP_4096"),
    ("GRP17", "MODP_6144"),
    ("GRP18", "MODP_8192"),
    ("GRP19", "ECP_256"),
    ("GRP20", "ECP_384"),
    ("GRP21", "ECP_521"),
    ("GRP26", "ECP_224"),
    ("GRP27", "BP_224"),
    ("GRP28", "BP_256"),
    ("GRP29", "BP_384"),
    ("GRP30", "BP_512"),
)
# A name without a group part, and "-PFS" alone, mean this group.
IMPLICIT_GROUP = "MODP_1024"

# Main Mode name suffix ("" = none) -> AUTHENTICATION_METHOD.
MM_AUTHS: tuple[tuple[str, str], ...] = (
    ("", "PRE_SHARED"),
    ("DSS", "DSS"),
    ("RSA_SIG", "RSA_SIG"),
)

# Quick Mode ESP name part -> (TRANSFORM_ID, KEY_LENGTH or None, is AEAD).
# AEAD (GCM/GMAC) suites are generated only without a hash.
QM_CIPHERS: tuple[tuple[str, str, str | None, bool], ...] = (
    ("3DES", "3DES", None, False),
    ("CAST", "CAST", None, False),
    ("BLF", "BLOWFISH", "128,96:192", False),
    ("AES", "AES", "128,128:256", False),
    ("AES-128", "AES", "128,128:128", False),
    ("AES-192", "AES", "192,192:192", False),
    ("AES-256", "AES", "256,256:256", False),
    ("AESCTR", "AES_CTR", None, False),
    ("AESCTR-128", "AES_CTR", "128,128:128", False),
    ("AESCTR-192", "AES_CTR", "192,192:192", False),
    ("AESCTR-256", "AES_CTR", "256,256:256", False),
    ("AESGCM-128", "AES_GCM_16", "128,128:128", True),
    ("AESGCM-192", "AES_GCM_16", "192,192:192", True),
    ("AESGCM-256", "AES_GCM_16", "256,256:256", True),
    ("AESGMAC-128", "AES_GMAC", "128,128:128", True),
    ("AESGMAC-192", "AES_GMAC", "192,192:192", True),
    ("AESGMAC-256", "AES_GMAC", "256,256:256", True),
    ("NULL", "NULL", None, False),
)

# Quick Mode name part -> (AH TRANSFORM_ID, AUTHENTICATION_ALGORITHM).
QM_HASHES: tuple[tuple[str, str, str], ...] = (
    ("MD5", "MD5", "HMAC_MD5"),
    ("SHA", "SHA", "HMAC_SHA"),
    ("RIPEMD", "RIPEMD", "HMAC_RIPEMD"),
    ("SHA2-256", "SHA2_256", "HMAC_SHA2_256"),
    ("SHA2-384", "SHA2_384", "HMAC_SHA2_384"),
    ("SHA2-512", "SHA2_512", "HMAC_SHA2_512"),
)


def _main_mode() -> Iterator[Triple]:
    for cipher, encryption, key_length in MM_CIPHERS:
        for hash_part, hash_name in MM_HASHES:
            for group_part, group in (("", IMPLICIT_GROUP), *GROUPS):
                for auth_part, auth in MM_AUTHS:
                    name = "-".join(p for p in (cipher, hash_part, group_part, auth_part) if p)
                    yield name, "ENCRYPTION_ALGORITHM", encryption
                    if key_length is not None:
                        yield name, "KEY_LENGTH", key_length
                    yield name, "HASH_ALGORITHM", hash_name
                    yield name, "AUTHENTICATION_METHOD", auth
                    yield name, "GROUP_DESCRIPTION", group
                    yield name, "Life", "LIFE_MAIN_MODE"


def _pfs_options() -> list[tuple[str, str | None]]:
    """(name part, GROUP_DESCRIPTION): no PFS, ``-PFS`` (MODP_1024), ``-PFS-GRPn``."""
    options: list[tuple[str, str | None]] = [("", None), ("PFS", IMPLICIT_GROUP)]
    options.extend((f"PFS-{part}", group) for part, group in GROUPS)
    return options


def _suite(base: str, protocol: str, transform_id: str, mode: str, auth: str | None,
           group: str | None, key_length: str | None) -> Iterator[Triple]:
    yield f"{base}-SUITE", "Protocols", base
    yield base, "PROTOCOL_ID", protocol
    yield base, "Transforms", f"{base}-XF"
    xf = f"{base}-XF"
    yield xf, "TRANSFORM_ID", transform_id
    yield xf, "ENCAPSULATION_MODE", mode
    if auth is not None:
        yield xf, "AUTHENTICATION_ALGORITHM", auth
    if group is not None:
        yield xf, "GROUP_DESCRIPTION", group
    if key_length is not None:
        yield xf, "KEY_LENGTH", key_length
    yield xf, "Life", "LIFE_QUICK_MODE"


def _quick_mode() -> Iterator[Triple]:
    pfs_options = _pfs_options()
    for trp_part, mode in (("", "TUNNEL"), ("TRP", "TRANSPORT")):
        esp_prefix = "-".join(p for p in ("QM-ESP", trp_part) if p)
        for cipher, transform_id, key_length, aead in QM_CIPHERS:
            hashes: list[tuple[str, str | None]] = [("", None)]
            if not aead:
                hashes.extend((part, auth) for part, _, auth in QM_HASHES)
            for hash_part, auth in hashes:
                for pfs_part, group in pfs_options:
                    base = "-".join(p for p in (esp_prefix, cipher, hash_part, pfs_part) if p)
                    yield from _suite(base, "IPSEC_ESP", transform_id, mode, auth, group,
                                      key_length)
        ah_prefix = "-".join(p for p in ("QM-AH", trp_part) if p)
        for hash_part, ah_id, auth in QM_HASHES:
            for pfs_part, group in pfs_options:
                base = "-".join(p for p in (ah_prefix, hash_part, pfs_part) if p)
                yield from _suite(base, "IPSEC_AH", ah_id, mode, auth, group, None)


@lru_cache(maxsize=1)
def _algorithm_defaults() -> tuple[Triple, ...]:
    return (*_main_mode(), *_quick_mode())


def generate(lookup: Lookup) -> Iterator[Triple]:
    """Every default binding; ``lookup(section, tag)`` reads the user's values.

    The user's ``[General]`` Default-phase-1-lifetime, Default-phase-2-lifetime
    and Default-phase-1-ID shape the lifetime and default peer sections.
    """
    for tag, value in GENERAL_DEFAULTS:
        yield "General", tag, value
    for tag, value in X509_DEFAULTS:
        yield "X509-certificates", tag, value
    for tag, value in KEYNOTE_DEFAULTS:
        yield "KeyNote", tag, value

    phase_1_life = lookup("General", "Default-phase-1-lifetime") or DEFAULT_PHASE_1_LIFETIME
    phase_2_life = lookup("General", "Default-phase-2-lifetime") or DEFAULT_PHASE_2_LIFETIME
    yield "LIFE_MAIN_MODE", "LIFE_TYPE", "SECONDS"
    yield "LIFE_MAIN_MODE", "LIFE_DURATION", phase_1_life
    yield "LIFE_QUICK_MODE", "LIFE_TYPE", "SECONDS"
    yield "LIFE_QUICK_MODE", "LIFE_DURATION", phase_2_life

    yield "Phase 1", "Default", "Default-phase-1"
    yield "Default-phase-1", "Phase", "1"
    yield "Default-phase-1", "Configuration", "Default-phase-1-configuration"
    default_id = lookup("General", "Default-phase-1-ID")
    if default_id:
        yield "Default-phase-1", "ID", default_id
    yield "Default-phase-1-configuration", "EXCHANGE_TYPE", "ID_PROT"
    yield "Default-phase-1-configuration", "Transforms", "3DES-SHA-RSA_SIG"

    yield from _algorithm_defaults()


@lru_cache(maxsize=1)
def generated_section_names() -> frozenset[str]:
    """Lower-cased names of every section :func:`generate` can create."""
    names = {section.lower() for section, _, _ in generate(lambda section, tag: None)}
    return frozenset(names)


def main_mode_transform_names() -> list[str]:
    """Every generated Main Mode transform name, in generation order."""
    return list(dict.fromkeys(section for section, _, _ in _main_mode()))


def quick_mode_suite_names() -> list[str]:
    """Every generated Quick Mode suite name (``...-SUITE``), in generation order."""
    return list(dict.fromkeys(section for section, tag, _ in _quick_mode()
                              if tag == "Protocols"))
