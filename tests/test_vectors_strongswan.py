"""IKEv1 key derivation checked against values strongSwan's charon computed.

The vectors in ``tests/vectors/strongswan-*.json`` were written by
``tests/vectors/make_strongswan_vectors.py``, which ran two charon instances
(one initiator, one responder) in network namespaces with ``ike``/``chd``
logging at level 4 and took every input and output of the key derivation
from their logs; the log lines are kept next to each file
(``strongswan-*.log``).  Here each vector is recomputed with
:mod:`isakmpd.crypto.keys` and :mod:`isakmpd.crypto.ipsec_keys`:

* SKEYID for pre-shared keys, SKEYID_d/_a/_e, the phase 1 cipher key (RFC 2409
  appendix B expansion where SKEYID_e is short), HASH_I and HASH_R;
* the phase 1 IV, and the whole phase 1 IV chain: the encrypted phase 1
  messages charon received are decrypted with our cipher and must contain
  charon's ID and HASH payloads;
* the Quick Mode IV from the last phase 1 IV, HASH(1), HASH(2) and HASH(3)
  (over the decrypted Quick Mode messages, which also carry the nonces);
* KEYMAT and the ESP encryption / integrity keys of both SAs, with and
  without PFS.

Further tests make sure every vector names its source and that its values are
still what its log excerpt says, so the JSON cannot drift from what charon
printed.  :class:`LiveStrongSwanTests` re-runs two scenarios against the
installed charon (root only) so the check also holds for today's strongSwan.

Test methods are generated per vector file: ``test_<check>_<vector name>``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from isakmpd.crypto import ipsec_keys, keys
from isakmpd.crypto.cipher import Phase1Cipher, phase1_key_bytes
from isakmpd.crypto.ipsec_keys import STRONGSWAN_ESP_DEFAULT_KEY_BITS, esp_layout
from isakmpd.wire.constants import HashAlgorithm, ProtocolId
from tests.support.charon_log import (
    PAYLOAD_HASH,
    PAYLOAD_ID,
    PAYLOAD_KE,
    PAYLOAD_NONCE,
    extract_vector,
    parse_log,
    payload_chain,
)

VECTOR_DIR = Path(__file__).resolve().parent / "vectors"
SCRIPT = VECTOR_DIR / "make_strongswan_vectors.py"
ISAKMP_HEADER = 28

Vector = dict[str, Any]


def _h(value: str | None) -> bytes:
    return bytes.fromhex(value) if value else b""


def load_vectors() -> list[tuple[Path, Vector]]:
    """All ``strongswan-*.json`` files, parsed, sorted by name."""
    return [(p, json.loads(p.read_text())) for p in sorted(VECTOR_DIR.glob("strongswan-*.json"))]


def log_sections(text: str) -> dict[str, str]:
    """The ``# === initiator`` / ``# === responder`` sections of a log excerpt."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# === "):
            current = sections.setdefault(line.split()[2], [])
        elif current is not None and not line.startswith("#"):
            current.append(line)
    return {role: "\n".join(lines) for role, lines in sections.items()}


def _decrypt(cipher: Phase1Cipher, chain: keys.IvChain, datagram: bytes
             ) -> tuple[int, bytes, keys.IvChain]:
    """(first payload type, plaintext, next chain) of an encrypted datagram."""
    if datagram[:4] == b"\0\0\0\0":  # non-ESP marker, UDP 4500
        datagram = datagram[4:]
    assert datagram[19] & 1, "datagram is not encrypted"
    plaintext, chain = chain.decrypt(cipher, datagram[ISAKMP_HEADER:])
    return datagram[16], plaintext, chain


# --- the checks, each run for every vector ----------------------------------

def check_skeyid(tc: SynchronousTestCase, v: Vector) -> None:
    """SKEYID = prf(pre-shared key, Ni_b | Nr_b)."""
    p1 = v["phase1"]
    skeyid = keys.skeyid_pre_shared(p1["hash_algorithm_id"], _h(p1["psk"]),
                                    _h(p1["ni_b"]), _h(p1["nr_b"]))
    tc.assertEqual(skeyid.hex(), p1["skeyid"])


def check_skeyids(tc: SynchronousTestCase, v: Vector) -> None:
    """SKEYID_d, SKEYID_a and SKEYID_e from charon's SKEYID, g^xy and cookies."""
    p1 = v["phase1"]
    derived = keys.derive_skeyids(p1["hash_algorithm_id"], _h(p1["skeyid"]), _h(p1["g_xy"]),
                                  _h(p1["cky_i"]), _h(p1["cky_r"]))
    tc.assertEqual(
        (derived.skeyid_d.hex(), derived.skeyid_a.hex(), derived.skeyid_e.hex()),
        (p1["skeyid_d"], p1["skeyid_a"], p1["skeyid_e"]))


def check_cipher_key(tc: SynchronousTestCase, v: Vector) -> None:
    """The phase 1 cipher key ("encryption key Ka"), appendix B expansion included."""
    p1 = v["phase1"]
    nbytes = phase1_key_bytes(p1["encryption_algorithm_id"], p1["key_length"])
    tc.assertEqual(nbytes, len(_h(p1["cipher_key"])))
    key = keys.expand_cipher_key(p1["hash_algorithm_id"], _h(p1["skeyid_e"]), nbytes)
    tc.assertEqual(key.hex(), p1["cipher_key"])


def check_phase1_keys(tc: SynchronousTestCase, v: Vector) -> None:
    """derive_phase1_keys from the raw inputs gives all of charon's phase 1 keys."""
    p1 = v["phase1"]
    got = keys.derive_phase1_keys(
        p1["hash_algorithm_id"], p1["encryption_algorithm_id"], p1["key_length"],
        _h(p1["g_xy"]), _h(p1["ni_b"]), _h(p1["nr_b"]), _h(p1["cky_i"]), _h(p1["cky_r"]),
        psk=_h(p1["psk"]))
    tc.assertEqual(
        [got.skeyid.hex(), got.skeyid_d.hex(), got.skeyid_a.hex(), got.skeyid_e.hex(),
         got.cipher_key.hex()],
        [p1["skeyid"], p1["skeyid_d"], p1["skeyid_a"], p1["skeyid_e"], p1["cipher_key"]])
    tc.assertEqual(int(got.cipher_algorithm), p1["encryption_algorithm_id"])


def check_phase1_hashes(tc: SynchronousTestCase, v: Vector) -> None:
    """HASH_I and HASH_R over g^xi, g^xr, cookies, SAi_b and the ID bodies."""
    p1 = v["phase1"]
    args = (p1["hash_algorithm_id"], _h(p1["skeyid"]), _h(p1["g_xi"]), _h(p1["g_xr"]),
            _h(p1["cky_i"]), _h(p1["cky_r"]), _h(p1["sai_b"]))
    tc.assertEqual(keys.hash_i(*args, _h(p1["idii_b"])).hex(), p1["hash_i"])
    tc.assertEqual(keys.hash_r(*args, _h(p1["idir_b"])).hex(), p1["hash_r"])


def check_phase1_iv(tc: SynchronousTestCase, v: Vector) -> None:
    """The first phase 1 IV, hash(g^xi | g^xr) truncated to the cipher block."""
    p1 = v["phase1"]
    iv = keys.phase1_iv(p1["hash_algorithm_id"], _h(p1["g_xi"]), _h(p1["g_xr"]),
                        p1["cipher_block_size"])
    tc.assertEqual(iv.hex(), p1["iv"])


def check_phase1_messages(tc: SynchronousTestCase, v: Vector) -> None:
    """Decrypt charon's encrypted phase 1 messages: ID and HASH payloads as logged.

    This uses our cipher key and our IV chain; the chain must end at the IV
    charon used to start Quick Mode.
    """
    p1 = v["phase1"]
    messages = p1["encrypted"]
    tc.assertTrue(messages, "vector has no encrypted phase 1 message")
    cipher = Phase1Cipher(p1["encryption_algorithm_id"], _h(p1["cipher_key"]))
    chain = keys.IvChain.phase1(p1["hash_algorithm_id"], _h(p1["g_xi"]), _h(p1["g_xr"]),
                                p1["cipher_block_size"])
    for message in messages:
        first, plaintext, chain = _decrypt(cipher, chain, _h(message["datagram"]))
        payloads = dict(payload_chain(first, plaintext)[0])
        role = "i" if message["sender"] == "initiator" else "r"
        tc.assertEqual(payloads[PAYLOAD_HASH].hex(), p1[f"hash_{role}"])
        if p1["exchange"] == "main":
            tc.assertEqual(payloads[PAYLOAD_ID].hex(), p1[f"idi{role}_b"])
    tc.assertEqual(chain.iv.hex(), v["phase2"]["phase1_last_iv"])


def check_phase2_iv(tc: SynchronousTestCase, v: Vector) -> None:
    """The Quick Mode IV, hash(last phase 1 IV | M-ID) truncated."""
    p1, p2 = v["phase1"], v["phase2"]
    iv = keys.phase2_iv(p1["hash_algorithm_id"], _h(p2["phase1_last_iv"]), p2["message_id"],
                        p1["cipher_block_size"])
    tc.assertEqual(iv.hex(), p2["iv"])
    tc.assertEqual(keys.message_id_bytes(p2["message_id"]).hex(), p2["message_id_hex"])


def check_quick_mode_hashes(tc: SynchronousTestCase, v: Vector) -> None:
    """Decrypt the Quick Mode messages; HASH(1), HASH(2) and HASH(3) recomputed.

    The nonces in the decrypted messages must be the ones in charon's KEYMAT
    seeds, and a KE payload must be present exactly when PFS was used.
    """
    p1, p2 = v["phase1"], v["phase2"]
    alg, skeyid_a, mid = p1["hash_algorithm_id"], _h(p1["skeyid_a"]), p2["message_id"]
    ni_b, nr_b = _h(p2["ni_b"]), _h(p2["nr_b"])
    cipher = Phase1Cipher(p1["encryption_algorithm_id"], _h(p1["cipher_key"]))
    chain = keys.IvChain(HashAlgorithm(alg), p1["cipher_block_size"], _h(p2["iv"]))
    messages = p2["encrypted"]
    tc.assertEqual([m["sender"] for m in messages], ["initiator", "responder", "initiator"])
    bodies = []
    for message in messages:
        first, plaintext, chain = _decrypt(cipher, chain, _h(message["datagram"]))
        payloads, end = payload_chain(first, plaintext)
        tc.assertEqual(first, PAYLOAD_HASH)
        after_hash = plaintext[4 + len(payloads[0][1]):end]
        bodies.append((payloads[0][1], dict(payloads[1:]), after_hash))
    (hash1, pl1, rest1), (hash2, pl2, rest2), (hash3, _, _) = bodies
    tc.assertEqual((pl1[PAYLOAD_NONCE], pl2[PAYLOAD_NONCE]), (ni_b, nr_b))
    pfs = p2["pfs"] is not None
    tc.assertEqual((PAYLOAD_KE in pl1, PAYLOAD_KE in pl2), (pfs, pfs))
    tc.assertEqual(ipsec_keys.quick_mode_hash1(alg, skeyid_a, mid, rest1), hash1)
    tc.assertEqual(ipsec_keys.quick_mode_hash2(alg, skeyid_a, mid, ni_b, rest2), hash2)
    tc.assertEqual(ipsec_keys.quick_mode_hash3(alg, skeyid_a, mid, ni_b, nr_b), hash3)
    tc.assertEqual(hash3.hex(), p2["hash3"])


def _layout(p2: Vector) -> ipsec_keys.KeymatLayout:
    return esp_layout(p2["transform_id"], p2["key_length"], p2["auth_algorithm_id"],
                      STRONGSWAN_ESP_DEFAULT_KEY_BITS)


def check_keymat_seeds(tc: SynchronousTestCase, v: Vector) -> None:
    """charon's KEYMAT seed is [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b (RFC 2409 5.5)."""
    p2 = v["phase2"]
    tc.assertEqual(p2["protocol_id"], int(ProtocolId.IPSEC_ESP))
    tc.assertEqual(p2["g_qm_xy"] is not None, p2["pfs"] is not None)
    for sa in p2["sas"]:
        seed = (_h(p2["g_qm_xy"]) + bytes([p2["protocol_id"]])
                + ipsec_keys.spi_bytes(int(sa["spi"], 16)) + _h(p2["ni_b"]) + _h(p2["nr_b"]))
        tc.assertEqual(seed.hex(), sa["seed"])


def check_keymat(tc: SynchronousTestCase, v: Vector) -> None:
    """Raw KEYMAT for each SA is charon's encryption key followed by its integrity key."""
    p1, p2 = v["phase1"], v["phase2"]
    for sa in p2["sas"]:
        expected = _h(sa["encryption_key"]) + _h(sa["integrity_key"])
        material = ipsec_keys.keymat(
            p1["hash_algorithm_id"], _h(p1["skeyid_d"]), p2["protocol_id"],
            int(sa["spi"], 16), _h(p2["ni_b"]), _h(p2["nr_b"]), len(expected),
            _h(p2["g_qm_xy"]) or None)
        tc.assertEqual(material.hex(), expected.hex(), f"SA {sa['spi']}")


def check_esp_keys(tc: SynchronousTestCase, v: Vector) -> None:
    """ESP keys of both SAs from the negotiated transform (key lengths from our layout)."""
    p1, p2 = v["phase1"], v["phase2"]
    layout = _layout(p2)
    for sa in p2["sas"]:
        got = ipsec_keys.derive_sa_keys(
            p1["hash_algorithm_id"], _h(p1["skeyid_d"]), layout, _h(sa["spi"]),
            _h(p2["ni_b"]), _h(p2["nr_b"]), _h(p2["g_qm_xy"]) or None)
        tc.assertEqual((got.enc_key.hex(), got.auth_key.hex()),
                       (sa["encryption_key"], sa["integrity_key"]), f"SA {sa['spi']}")


def check_esp_key_pair(tc: SynchronousTestCase, v: Vector) -> None:
    """derive_sa_key_pair as each peer calls it: inbound on its own SPI."""
    p1, p2 = v["phase1"], v["phase2"]
    by_receiver = {sa["receiver"]: sa for sa in p2["sas"]}
    for me, peer in (("initiator", "responder"), ("responder", "initiator")):
        inbound, outbound = ipsec_keys.derive_sa_key_pair(
            p1["hash_algorithm_id"], _h(p1["skeyid_d"]), _layout(p2),
            _h(by_receiver[me]["spi"]), _h(by_receiver[peer]["spi"]),
            _h(p2["ni_b"]), _h(p2["nr_b"]), _h(p2["g_qm_xy"]) or None)
        for keys_, sa in ((inbound, by_receiver[me]), (outbound, by_receiver[peer])):
            tc.assertEqual(keys_.spi.hex(), sa["spi"])
            tc.assertEqual(keys_.enc_key.hex(), sa["encryption_key"], f"{me} SA {sa['spi']}")
            tc.assertEqual(keys_.auth_key.hex(), sa["integrity_key"], f"{me} SA {sa['spi']}")


CHECKS: dict[str, Callable[[SynchronousTestCase, Vector], None]] = {
    "skeyid": check_skeyid,
    "skeyids": check_skeyids,
    "cipher_key": check_cipher_key,
    "phase1_keys": check_phase1_keys,
    "phase1_hashes": check_phase1_hashes,
    "phase1_iv": check_phase1_iv,
    "phase1_messages": check_phase1_messages,
    "phase2_iv": check_phase2_iv,
    "quick_mode_hashes": check_quick_mode_hashes,
    "keymat_seeds": check_keymat_seeds,
    "keymat": check_keymat,
    "esp_keys": check_esp_keys,
    "esp_key_pair": check_esp_key_pair,
}


def check_all(tc: SynchronousTestCase, v: Vector) -> None:
    """Every check in :data:`CHECKS` on one vector."""
    for check in CHECKS.values():
        check(tc, v)


# --- tests ------------------------------------------------------------------

class StrongSwanVectorTests(SynchronousTestCase):
    """Our key derivation on every vector (methods added below, per file)."""


def _add_vector_tests() -> None:
    for path, vector in load_vectors():
        slug = path.stem.removeprefix("strongswan-").replace("-", "_")
        for check_name, check in CHECKS.items():
            def test(self: SynchronousTestCase, check: Any = check, vector: Vector = vector,
                     ) -> None:
                check(self, vector)
            test.__name__ = f"test_{check_name}_{slug}"
            test.__doc__ = f"{path.name}: {(check.__doc__ or '').splitlines()[0]}"
            setattr(StrongSwanVectorTests, test.__name__, test)


_add_vector_tests()


class StrongSwanVectorFileTests(SynchronousTestCase):
    """The vector files themselves: present, sourced, and faithful to their logs."""

    def test_vectors_present(self) -> None:
        """There are vectors, with and without PFS, for Main and Aggressive Mode."""
        vectors = [v for _, v in load_vectors()]
        self.assertTrue(vectors, f"no strongswan-*.json in {VECTOR_DIR}; run {SCRIPT.name}")
        self.assertIn(True, [v["phase2"]["pfs"] is not None for v in vectors])
        self.assertIn(True, [v["phase2"]["pfs"] is None for v in vectors])
        self.assertIn("main", [v["phase1"]["exchange"] for v in vectors])
        self.assertIn("aggressive", [v["phase1"]["exchange"] for v in vectors])

    def test_source(self) -> None:
        """Every vector says where it came from: version, date, script, configuration."""
        for path, v in load_vectors():
            source = v.get("source")
            self.assertIsInstance(source, dict, path.name)
            for key in ("implementation", "version", "generated", "script", "configuration",
                        "log_excerpt"):
                self.assertTrue(source.get(key), f"{path.name}: source.{key} missing")
            self.assertIn("strongSwan", source["implementation"])
            self.assertTrue((VECTOR_DIR.parent.parent / source["script"]).exists())
            self.assertEqual(source["log_excerpt"], path.with_suffix(".log").name)

    def test_json_matches_log(self) -> None:
        """Each JSON value is what the log excerpt beside it says charon printed."""
        for path, v in load_vectors():
            log_path = path.with_suffix(".log")
            self.assertTrue(log_path.exists(), f"{log_path.name} missing")
            sections = log_sections(log_path.read_text())
            self.assertEqual(sorted(sections), ["initiator", "responder"], log_path.name)
            logged = extract_vector(parse_log(sections["initiator"]),
                                    parse_log(sections["responder"]))
            self.assertEqual(logged["phase1"].pop("exchange"), v["phase1"]["exchange_type"])
            self.assertEqual(logged["phase2"].pop("protocol"), v["phase2"]["protocol_id"])
            for phase in ("phase1", "phase2"):
                for key, value in logged[phase].items():
                    self.assertEqual(v[phase][key], value, f"{path.name}: {phase}.{key}")

    def test_log_parser_keeps_order_per_thread(self) -> None:
        """Hex lines of two threads interleaved still make two correct dumps."""
        text = "\n".join([
            "08:55:38 15[IKE] <a|1> SKEYID => 4 bytes @ 0x1",
            "08:55:38 16[IKE] <a|1> SKEYID_d => 2 bytes @ 0x2",
            "08:55:38 15[IKE] <a|1>    0: 01 02 03 04" + " " * 37 + "....",
            "08:55:38 16[IKE] <a|1>    0: AA BB" + " " * 43 + "..",
        ])
        dumps = {d.label: d.value for d in parse_log(text) if hasattr(d, "label")}
        self.assertEqual(dumps, {"SKEYID": b"\1\2\3\4", "SKEYID_d": b"\xaa\xbb"})


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_strongswan_vectors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


class LiveStrongSwanTests(SynchronousTestCase):
    """Run charon now (two namespaces) and check our derivation on fresh values.

    Needs root, ``ip``, charon, swanctl and the kernel-libipsec plugin; skipped
    otherwise.  One Main Mode run without PFS and one with PFS, about half a
    second each; namespaces and processes are removed by the helpers.
    """

    def setUp(self) -> None:
        from tests.support.charon import need_charon
        from tests.support.netns import need_root_and_tools

        reason = need_root_and_tools("unshare", "mount") or need_charon()
        if reason:
            raise SkipTest(f"live strongSwan vectors: {reason}")
        self.script = _load_script()

    def _check_live(self, name: str) -> None:
        script = self.script
        scenario = next(sc for sc in script.SCENARIOS if sc.name == name)
        with tempfile.TemporaryDirectory(prefix="ssv-live-") as tmp:
            log_i, log_r, sa_i, sa_r, configs = script.run_pair(scenario, Path(tmp))
        extracted = extract_vector(parse_log(log_i), parse_log(log_r))
        script.sanity_check(scenario, extracted, sa_i, sa_r)
        vector = json.loads(json.dumps(script.build_vector(scenario, extracted, sa_i, configs)))
        check_all(self, vector)

    def test_main_mode(self) -> None:
        """Main Mode PSK, Quick Mode without PFS, against the installed charon."""
        self._check_live("mm-psk-aes128-sha1-modp2048")

    def test_main_mode_pfs(self) -> None:
        """Main Mode PSK over ECP-256, Quick Mode with PFS, against the installed charon."""
        self._check_live("mm-psk-pfs-aes256-sha256-ecp256")
