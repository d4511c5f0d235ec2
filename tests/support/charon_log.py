"""Read IKEv1 keying material out of strongSwan charon filelogs.

charon (5.9.x) logs what it derives when its ``ike`` and ``chd`` log levels
are 4, and the raw datagrams it receives when ``net`` is 3.  Every binary
value is a multi-line dump::

    08:55:38 15[IKE] <ikev1|1> SKEYID => 20 bytes @ 0x7fd66c006010
    08:55:38 15[IKE] <ikev1|1>    0: 46 62 5D 85 24 66 92 69 96 7E 89 82 91 3D D8 D6  Fb].$f.i.~...=..
    08:55:38 15[IKE] <ikev1|1>   16: 5F 7D 03 25                                      _}.%

The values and where charon logs them (``src/libcharon/sa/ikev1/keymat_v1.c``):

==============================  =====  ==================================================
label                           level  value
==============================  =====  ==================================================
shared Diffie Hellman secret    ike 4  g^xy
SKEYID, SKEYID_d/_a/_e          ike 4  RFC 2409 section 5
encryption key Ka               ike 4  phase 1 cipher key (appendix B expansion applied)
initial IV                      ike 4  hash(g^xi | g^xr), truncated to the block size
next IV for MID N               ike 4  IV of the next message of exchange N (0: phase 1)
HASH_I data / HASH_R data       ike 3  g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b (and
                                       the responder's order for HASH_R)
HASH_I, HASH_R, Hash(1..3)      ike 3  the hashes
DH secret                       chd 4  g(qm)^xy (Quick Mode with PFS only)
initiator / responder SA seed   chd 4  [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b
encryption/integrity            chd 4  ESP keys; "initiator" = the SA the initiator
  initiator/responder key              sends on (its SPI chosen by the responder)
received packet                 net 3  the datagram (4 zero bytes first on port 4500)
==============================  =====  ==================================================

The phase 1 nonces are not logged as such; they are taken from the
unencrypted phase 1 datagrams each side received (the responder received
Ni, the initiator Nr).  The Quick Mode nonces come from the SA seeds.  The
encrypted phase 1 and Quick Mode datagrams are kept as well, so a test can
decrypt them with the derived key and IVs and check the hashes inside.

:func:`extract_vector` turns an initiator's and a responder's log into one
dict of hex strings; it is used both by ``tests/vectors/
make_strongswan_vectors.py`` (to write the vector files) and by the tests (to
check that a vector file still says what its log excerpt says).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Dump",
    "LogError",
    "LogLine",
    "excerpt",
    "extract_vector",
    "isakmp_payloads",
    "parse_log",
    "payload_chain",
]

_PREFIX = r"^(?P<time>\S+) (?P<thread>\d+)\[(?P<sub>[A-Z]+)\] (?:<(?P<sa>[^>]*)> )?"
_HEADER = re.compile(_PREFIX + r"(?P<label>.*?) => (?P<len>\d+) bytes @ \S+$")
_DATA = re.compile(_PREFIX + r"\s*(?P<off>\d+): (?P<rest>.*)$")
_LINE = re.compile(_PREFIX + r"(?P<text>.*)$")

#: ISAKMP payload types used here (RFC 2408 section 3.1).
PAYLOAD_SA, PAYLOAD_KE, PAYLOAD_ID, PAYLOAD_HASH, PAYLOAD_NONCE = 1, 4, 5, 8, 10
#: ISAKMP exchange types (RFC 2408 section 3.1, RFC 2409).
EXCHANGE_MAIN, EXCHANGE_AGGRESSIVE, EXCHANGE_QUICK = 2, 4, 32

#: Dump labels worth keeping in an excerpt.
KEY_LABELS = frozenset({
    "shared Diffie Hellman secret", "SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e",
    "encryption key Ka", "initial IV", "HASH_I data", "HASH_R data", "HASH_I", "HASH_R",
    "Hash(1)", "Hash(2)", "Hash(3)", "DH secret", "initiator SA seed",
    "responder SA seed", "encryption initiator key", "encryption responder key",
    "integrity initiator key", "integrity responder key",
})
#: Single lines worth keeping in an excerpt (context for a human reader).
CONTEXT = re.compile(
    r"Starting IKE charon daemon|selected proposal|IKE_SA .* established|"
    r"CHILD_SA .* established|generating (ID_PROT|AGGRESSIVE|QUICK_MODE) |"
    r"parsed (ID_PROT|AGGRESSIVE|QUICK_MODE) |  SPI 0x|adding (in|out)bound ESP SA"
)
_IV_LABEL = re.compile(r"next IV for MID (\d+)$")


class LogError(ValueError):
    """The log does not contain what a vector needs."""


@dataclass
class LogLine:
    """A single log line that is not part of a dump."""

    thread: int
    subsystem: str
    text: str
    raw: str


@dataclass
class Dump:
    """One ``LABEL => N bytes @ ADDR`` value with its hex lines."""

    thread: int
    subsystem: str
    label: str
    length: int
    data: bytearray = field(default_factory=bytearray)
    lines: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True once all announced bytes were read."""
        return len(self.data) == self.length

    @property
    def value(self) -> bytes:
        """The dumped bytes."""
        return bytes(self.data)


Entry = Dump | LogLine


def parse_log(text: str) -> list[Entry]:
    """Split a charon filelog into dumps and plain lines, in log order.

    Lines of different threads may interleave; a hex line continues the open
    dump of its own thread.  Lines that match neither form are ignored.
    """
    entries: list[Entry] = []
    open_dumps: dict[int, Dump] = {}
    for raw in text.splitlines():
        m = _HEADER.match(raw)
        if m:
            dump = Dump(int(m["thread"]), m["sub"], m["label"], int(m["len"]), lines=[raw])
            entries.append(dump)
            if dump.length:
                open_dumps[dump.thread] = dump
            continue
        m = _DATA.match(raw)
        if m and int(m["thread"]) in open_dumps:
            dump = open_dumps[int(m["thread"])]
            if int(m["off"]) == len(dump.data):
                dump.data += bytes.fromhex("".join(m["rest"][:47].split()))
                dump.lines.append(raw)
                if len(dump.data) >= dump.length:
                    del open_dumps[dump.thread]
                    if not dump.complete:
                        raise LogError(f"dump {dump.label!r} longer than announced")
                continue
        m = _LINE.match(raw)
        if m:
            entries.append(LogLine(int(m["thread"]), m["sub"], m["text"], raw))
    return entries


def isakmp_payloads(packet: bytes) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    """Header fields and ``(type, body)`` of each payload of an ISAKMP datagram.

    A leading non-ESP marker (four zero bytes, UDP port 4500) is skipped.  An
    encrypted message yields no payloads.
    """
    if packet[:4] == b"\0\0\0\0":
        packet = packet[4:]
    if len(packet) < 28:
        raise LogError("datagram shorter than an ISAKMP header")
    header = {
        "cky_i": packet[0:8], "cky_r": packet[8:16], "next": packet[16],
        "exchange": packet[18], "flags": packet[19],
        "message_id": int.from_bytes(packet[20:24], "big"),
    }
    if header["flags"] & 1:
        return header, []
    payloads, _end = payload_chain(packet[16], packet[28:])
    return header, payloads


def payload_chain(first: int, data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """``(type, body)`` of each payload in *data* (first of type *first*) and the
    offset where the chain ends (padding of a decrypted message follows there)."""
    payloads: list[tuple[int, bytes]] = []
    kind, pos = first, 0
    while kind:
        if pos + 4 > len(data):
            raise LogError("truncated payload chain")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 4 or pos + length > len(data):
            raise LogError(f"bad payload length {length}")
        payloads.append((kind, data[pos + 4:pos + length]))
        kind, pos = data[pos], pos + length
    return payloads, pos


class _Log:
    """Lookups in one parsed log."""

    def __init__(self, role: str, entries: Sequence[Entry]) -> None:
        self.role = role
        self.entries = list(entries)
        self.dumps = [e for e in entries if isinstance(e, Dump) and e.complete]
        self.used: set[int] = set()

    def all(self, label: str) -> list[Dump]:
        return [d for d in self.dumps if d.label == label]

    def first(self, label: str, *, required: bool = True) -> Dump | None:
        found = self.all(label)
        if not found:
            if required:
                raise LogError(f"{self.role} log has no {label!r} (log levels too low?)")
            return None
        self.used.add(id(found[0]))
        return found[0]

    def value(self, label: str) -> bytes:
        dump = self.first(label)
        assert dump is not None
        return dump.value

    def optional(self, label: str) -> bytes | None:
        dump = self.first(label, required=False)
        return dump.value if dump else None

    def phase1_packets(self) -> list[tuple[Dump, dict[str, Any], dict[int, bytes]]]:
        """Received unencrypted Main/Aggressive Mode datagrams."""
        found = []
        for dump in self.all("received packet"):
            header, payloads = isakmp_payloads(dump.value)
            if header["exchange"] in (EXCHANGE_MAIN, EXCHANGE_AGGRESSIVE) and payloads:
                found.append((dump, header, dict(payloads)))
        return found

    def packet_with(self, kind: int) -> tuple[dict[str, Any], dict[int, bytes]]:
        """The first received unencrypted phase 1 datagram carrying payload *kind*."""
        for dump, header, bodies in self.phase1_packets():
            if kind in bodies:
                self.used.add(id(dump))
                return header, bodies
        raise LogError(f"{self.role} log has no received phase 1 datagram with payload "
                       f"type {kind} (net log level below 3?)")

    def encrypted(self, message_id: int) -> list[Dump]:
        """Received encrypted datagrams of exchange *message_id*, in order."""
        found = []
        for dump in self.all("received packet"):
            header, _ = isakmp_payloads(dump.value)
            if header["flags"] & 1 and header["message_id"] == message_id:
                self.used.add(id(dump))
                found.append(dump)
        return found

    def ivs(self) -> list[tuple[int, Dump]]:
        out = []
        for dump in self.dumps:
            m = _IV_LABEL.match(dump.label)
            if m:
                out.append((int(m[1]), dump))
        return out


def _same(what: str, a: bytes | None, b: bytes | None) -> None:
    if a != b:
        raise LogError(f"initiator and responder disagree on {what}: "
                       f"{a.hex() if a else a} != {b.hex() if b else b}")


def _split_hash_data(data: bytes, first: bytes, second: bytes, sa_b: bytes,
                     ) -> tuple[bytes, bytes, bytes]:
    """(cookie 1, cookie 2, ID body) from a ``HASH_x data`` dump, checking the rest."""
    pos = len(first) + len(second)
    if data[:pos] != first + second:
        raise LogError("HASH data does not start with the KE payload bodies")
    c1, c2 = data[pos:pos + 8], data[pos + 8:pos + 16]
    pos += 16
    if data[pos:pos + len(sa_b)] != sa_b:
        raise LogError("HASH data does not contain SAi_b after the cookies")
    return c1, c2, data[pos + len(sa_b):]


def _split_seed(seed: bytes, secret: bytes | None) -> dict[str, bytes]:
    """[g(qm)^xy |] protocol | SPI | Ni_b | Nr_b, the nonces taken as equally long."""
    secret = secret or b""
    if seed[:len(secret)] != secret:
        raise LogError("SA seed does not start with the Quick Mode DH secret")
    rest = seed[len(secret):]
    if len(rest) < 5 or (len(rest) - 5) % 2:
        raise LogError(f"cannot split a {len(rest)}-byte SA seed into equal nonces")
    half = (len(rest) - 5) // 2
    return {"protocol": rest[:1], "spi": rest[1:5], "ni_b": rest[5:5 + half],
            "nr_b": rest[5 + half:]}


def extract_vector(initiator: Sequence[Entry], responder: Sequence[Entry]
                   ) -> dict[str, Any]:
    """Everything a key derivation vector needs, from both peers' logs.

    Returns ``{"phase1": {...}, "phase2": {...}}`` with hex strings (and the
    exchange type, message ID and protocol as ints).  Values both sides log
    must agree, else :class:`LogError`.
    """
    ini, res = _Log("initiator", initiator), _Log("responder", responder)
    p1: dict[str, Any] = {}
    for label, key in (("shared Diffie Hellman secret", "g_xy"), ("SKEYID", "skeyid"),
                       ("SKEYID_d", "skeyid_d"), ("SKEYID_a", "skeyid_a"),
                       ("SKEYID_e", "skeyid_e"), ("encryption key Ka", "cipher_key"),
                       ("initial IV", "iv"), ("HASH_I", "hash_i"), ("HASH_R", "hash_r")):
        value = ini.value(label)
        _same(label, value, res.value(label))
        p1[key] = value
    # Ni, g^xi and SAi_b from the first datagram the responder received; Nr and g^xr
    # from the datagram the initiator received.
    header_sa, bodies_sa = res.packet_with(PAYLOAD_SA)
    _header_i, bodies_i = res.packet_with(PAYLOAD_NONCE)
    header_r, bodies_r = ini.packet_with(PAYLOAD_NONCE)
    p1["exchange"] = header_sa["exchange"]
    p1["ni_b"], p1["nr_b"] = bodies_i[PAYLOAD_NONCE], bodies_r[PAYLOAD_NONCE]
    p1["g_xi"], p1["g_xr"] = bodies_i[PAYLOAD_KE], bodies_r[PAYLOAD_KE]
    p1["sai_b"] = bodies_sa[PAYLOAD_SA]
    hash_i_data, hash_r_data = ini.value("HASH_I data"), ini.value("HASH_R data")
    _same("HASH_I data", hash_i_data, res.value("HASH_I data"))
    _same("HASH_R data", hash_r_data, res.value("HASH_R data"))
    p1["cky_i"], p1["cky_r"], p1["idii_b"] = _split_hash_data(
        hash_i_data, p1["g_xi"], p1["g_xr"], p1["sai_b"])
    cky_r, cky_i, p1["idir_b"] = _split_hash_data(
        hash_r_data, p1["g_xr"], p1["g_xi"], p1["sai_b"])
    _same("cookies", p1["cky_i"] + p1["cky_r"], cky_i + cky_r)
    _same("CKY-I", p1["cky_i"], header_r["cky_i"])
    if p1["exchange"] == EXCHANGE_AGGRESSIVE:
        _same("IDii", p1["idii_b"], bodies_i.get(PAYLOAD_ID))
        _same("IDir", p1["idir_b"], bodies_r.get(PAYLOAD_ID))

    # Quick Mode: its message ID, first IV and the phase 1 IV it came from.
    ivs = ini.ivs()
    qm = [(mid, d) for mid, d in ivs if mid]
    if not qm:
        raise LogError("initiator log has no Quick Mode IV")
    mid, qm_iv = qm[0]
    before = [d for m, d in ivs[:ivs.index((mid, qm_iv))] if m == 0]
    if not before:
        raise LogError("initiator log has no phase 1 IV before Quick Mode")
    ini.used.update({id(qm_iv), id(before[-1])})
    p2: dict[str, Any] = {"message_id": mid, "iv": qm_iv.value,
                          "phase1_last_iv": before[-1].value}
    p2["g_qm_xy"] = ini.optional("DH secret")
    _same("DH secret", p2["g_qm_xy"], res.optional("DH secret"))
    p2["hash3"] = ini.value("Hash(3)")
    _same("Hash(3)", p2["hash3"], res.value("Hash(3)"))
    sas = []
    for who, peer in (("initiator", "responder"), ("responder", "initiator")):
        seed = ini.value(f"{who} SA seed")
        _same(f"{who} SA seed", seed, res.value(f"{who} SA seed"))
        parts = _split_seed(seed, p2["g_qm_xy"])
        enc = ini.optional(f"encryption {who} key")
        integ = ini.optional(f"integrity {who} key")
        _same(f"encryption {who} key", enc, res.optional(f"encryption {who} key"))
        _same(f"integrity {who} key", integ, res.optional(f"integrity {who} key"))
        sas.append({"sender": who, "receiver": peer, "spi": parts["spi"], "seed": seed,
                    "encryption_key": enc or b"", "integrity_key": integ or b""})
        for key in ("ni_b", "nr_b"):
            if p2.setdefault(key, parts[key]) != parts[key]:
                raise LogError(f"the SA seeds disagree on {key}")
        p2["protocol"] = parts["protocol"][0]
    p2["sas"] = sas
    p1["encrypted"] = _interleave(res.encrypted(0), ini.encrypted(0))
    p2["encrypted"] = _interleave(res.encrypted(mid), ini.encrypted(mid))
    res.used.update(id(d) for d in res.dumps if d.label in KEY_LABELS)
    ini.used.update(id(d) for d in ini.dumps if d.label in KEY_LABELS)
    return _hexify({"phase1": p1, "phase2": p2})


def _interleave(from_initiator: list[Dump], from_responder: list[Dump]
                ) -> list[dict[str, Any]]:
    """The encrypted messages of one exchange in exchange order (initiator first)."""
    out: list[dict[str, Any]] = []
    for i in range(max(len(from_initiator), len(from_responder))):
        for who, dumps in (("initiator", from_initiator), ("responder", from_responder)):
            if i < len(dumps):
                out.append({"sender": who, "datagram": dumps[i].value})
    return out


def _hexify(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hexify(v) for v in value]
    return value


def excerpt(entries: Iterable[Entry], *, qm_message_id: int | None = None) -> list[str]:
    """The lines a reader needs to check a vector: key dumps, IVs, context lines.

    Kept: dumps in :data:`KEY_LABELS`, phase 1 IVs and the IVs of Quick Mode
    *qm_message_id*, received unencrypted phase 1 datagrams carrying an SA or a nonce, the
    received encrypted datagrams of phase 1 and of that Quick Mode,
    and :data:`CONTEXT` lines.  Everything else (the noisy encoder output,
    vici chatter) is dropped.
    """
    out: list[str] = []
    for entry in entries:
        if isinstance(entry, LogLine):
            if CONTEXT.search(entry.text):
                out.append(entry.raw)
            continue
        keep = entry.label in KEY_LABELS
        m = _IV_LABEL.match(entry.label)
        if m and int(m[1]) in (0, qm_message_id):
            keep = True
        if entry.label == "received packet" and entry.complete:
            header, payloads = isakmp_payloads(entry.value)
            if header["flags"] & 1:
                keep = header["message_id"] in (0, qm_message_id)
            else:
                keep = (header["exchange"] in (EXCHANGE_MAIN, EXCHANGE_AGGRESSIVE)
                        and any(kind in (PAYLOAD_SA, PAYLOAD_NONCE) for kind, _ in payloads))
        if keep:
            out.extend(entry.lines)
    return out
