#!/usr/bin/env python3
"""Write IKEv1 key derivation vectors computed by strongSwan's charon.

Run by hand, as root, from the project root (not part of the test suite)::

    sudo .venv/bin/python tests/vectors/make_strongswan_vectors.py [NAME...]

For every scenario (or only those named) two private charon instances run in
two fresh network namespaces (see ``tests/support/charon.py``), the initiator
starts a Main or Aggressive Mode exchange with a pre-shared key followed by
one Quick Mode, and both write a filelog with ``ike = 4``, ``chd = 4`` (keying
material, hashes, IVs) and ``net = 3`` (received datagrams, for the phase 1
nonces and public values).  :func:`tests.support.charon_log.extract_vector`
reads both logs; this script adds the negotiated algorithms (as ISAKMP/IPsec
DOI numbers), the PSK, the configuration and the strongSwan version, checks
the result against ``swanctl --list-sas --raw`` and writes

* ``tests/vectors/strongswan-NAME.json`` - inputs and outputs of the key
  derivation, all binary values as lower-case hex;
* ``tests/vectors/strongswan-NAME.log`` - the log lines those values came
  from (initiator section, then responder section), so the JSON can be checked
  against what charon printed (``tests/test_vectors_strongswan.py`` does).

Everything created (namespaces, charon processes, the temporary directory) is
removed again, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.charon import (
    Charon,
    IKEv1Connection,
    charon_version,
    need_charon,
)
from tests.support.charon_log import excerpt, extract_vector, parse_log
from tests.support.netns import Topology, need_root_and_tools

VECTOR_DIR = Path(__file__).resolve().parent
SCRIPT = "tests/vectors/make_strongswan_vectors.py"

#: charon filelog levels: keys at ike/chd 4, HASH data at ike 3, datagrams at net 3.
LOG_LEVELS = {"default": 1, "ike": 4, "chd": 4, "net": 3, "enc": 1, "cfg": 1}

# strongSwan proposal keywords -> ISAKMP / IPsec DOI numbers (RFC 2409 appendix A,
# RFC 2407 section 4.4/4.5, RFC 3602, RFC 4106, RFC 4868, RFC 5903).
IKE_CIPHERS = {  # keyword: (ENCRYPTION_ALGORITHM name, number, KEY_LENGTH, block size)
    "aes128": ("AES_CBC", 7, 128, 16),
    "aes256": ("AES_CBC", 7, 256, 16),
    "3des": ("3DES_CBC", 5, None, 8),
}
IKE_HASHES = {"md5": ("MD5", 1), "sha1": ("SHA", 2), "sha256": ("SHA2_256", 4),
              "sha384": ("SHA2_384", 5)}
GROUPS = {"modp1024": ("MODP_1024", 2), "modp1536": ("MODP_1536", 5),
          "modp2048": ("MODP_2048", 14), "ecp256": ("ECP_256", 19),
          "ecp384": ("ECP_384", 20)}
ESP_CIPHERS = {  # keyword: (transform name, ESP transform ID, KEY_LENGTH)
    "aes128": ("AES", 12, 128),
    "aes256": ("AES", 12, 256),
    "aes128gcm16": ("AES_GCM_16", 20, 128),
    "3des": ("3DES", 3, None),
}
ESP_AUTHS = {"md5": ("HMAC_MD5", 1), "sha1": ("HMAC_SHA", 2),
             "sha256": ("HMAC_SHA2_256", 5), "sha384": ("HMAC_SHA2_384", 6)}


@dataclass(frozen=True)
class Scenario:
    """One exchange to record."""

    name: str
    description: str
    ike_cipher: str
    ike_hash: str
    group: str
    esp_cipher: str
    esp_auth: str | None
    pfs_group: str | None = None
    aggressive: bool = False
    psk: bytes = b"isakmpd-strongswan-vector"
    initiator: str = "192.0.2.1"
    responder: str = "192.0.2.2"

    def connection(self) -> IKEv1Connection:
        """The initiator's connection; the responder uses ``.mirrored()``."""
        esp = self.esp_cipher + (f"-{self.esp_auth}" if self.esp_auth else "")
        return IKEv1Connection(
            self.initiator, self.responder, psk=self.psk,
            proposals=f"{self.ike_cipher}-{self.ike_hash}-{self.group}",
            esp_proposals=esp, pfs_group=self.pfs_group, aggressive=self.aggressive,
        )


SCENARIOS = [
    Scenario(
        "mm-psk-aes128-sha1-modp2048",
        "Main Mode, pre-shared key, AES-128-CBC/SHA-1/MODP-2048; Quick Mode ESP "
        "AES-128-CBC/HMAC-SHA-1 without PFS",
        "aes128", "sha1", "modp2048", "aes128", "sha1",
    ),
    Scenario(
        "mm-psk-pfs-aes256-sha256-ecp256",
        "Main Mode, pre-shared key, AES-256-CBC/SHA2-256/ECP-256 (group 19); Quick Mode "
        "ESP AES-256-CBC/HMAC-SHA2-256 with PFS group 14 (MODP-2048)",
        "aes256", "sha256", "ecp256", "aes256", "sha256", pfs_group="modp2048",
        psk=b"\x00\x01binary pre-shared key\xff",
    ),
    Scenario(
        "am-psk-pfs-aes256-sha1-modp1536",
        "Aggressive Mode, pre-shared key, AES-256-CBC/SHA-1/MODP-1536 (SKEYID_e is "
        "shorter than the key: RFC 2409 appendix B expansion); Quick Mode ESP "
        "AES-GCM-16 128 with PFS group 19 (ECP-256)",
        "aes256", "sha1", "modp1536", "aes128gcm16", None, pfs_group="ecp256",
        aggressive=True,
    ),
    Scenario(
        "mm-psk-3des-md5-modp1024",
        "Main Mode, pre-shared key, 3DES-CBC/MD5/MODP-1024 (appendix B expansion with "
        "MD5, 8-byte blocks); Quick Mode ESP 3DES/HMAC-MD5 without PFS",
        "3des", "md5", "modp1024", "3des", "md5",
    ),
]


def package_version() -> str:
    """``strongswan-charon VERSION`` as dpkg knows it, or ``unknown``."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"],
        capture_output=True, text=True, check=False, timeout=10,
    )
    return f"strongswan-charon {proc.stdout.strip()}" if proc.returncode == 0 else "unknown"


def run_pair(sc: Scenario, workdir: Path, timeout: float = 20.0
             ) -> tuple[str, str, dict[str, Any], dict[str, Any], dict[str, str]]:
    """Run one exchange; return both logs, both ``--list-sas`` views and configs."""
    conn = sc.connection()
    with Topology("ssv") as topo:
        ns_i, ns_r = topo.add_namespace("i"), topo.add_namespace("r")
        topo.link(ns_i, f"{sc.initiator}/24", ns_r, f"{sc.responder}/24")
        with Charon(ns_i, workdir / "initiator", [conn], log_levels=LOG_LEVELS) as ci, \
                Charon(ns_r, workdir / "responder", [conn.mirrored()],
                       log_levels=LOG_LEVELS) as cr:
            ci.initiate(conn.child_name, timeout=int(timeout))
            sa_i = ci.wait_for_child(conn.child_name, timeout=timeout)
            sa_r = cr.wait_for_child(conn.child_name, timeout=timeout)
            configs = {
                "strongswan.conf (initiator)": ci.conf_path.read_text(),
                "swanctl.conf (initiator)": ci.swanctl_conf_path.read_text(),
                "swanctl.conf (responder)": cr.swanctl_conf_path.read_text(),
            }
        return (ci.read_log(), cr.read_log(), {"ike": sa_i[0], "child": sa_i[1]},
                {"ike": sa_r[0], "child": sa_r[1]}, configs)


def _prf(hash_name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hash_name).digest()


def sanity_check(sc: Scenario, v: dict[str, Any], sa_i: dict[str, Any],
                 sa_r: dict[str, Any]) -> None:
    """Check that the log was split at the right places (not our key derivation).

    SKEYID over the extracted nonces, Hash(3) over the Quick Mode nonces and the
    Quick Mode IV over the phase 1 IV: if these match what charon logged, the
    field boundaries are right.  Cookies and SPIs must match ``swanctl``.
    """
    hname = {"MD5": "md5", "SHA": "sha1", "SHA2_256": "sha256",
             "SHA2_384": "sha384"}[IKE_HASHES[sc.ike_hash][0]]
    p1, p2 = v["phase1"], v["phase2"]
    h = bytes.fromhex
    skeyid = _prf(hname, sc.psk, h(p1["ni_b"]) + h(p1["nr_b"]))
    assert skeyid.hex() == p1["skeyid"], "phase 1 nonces extracted wrongly"
    mid = p2["message_id"].to_bytes(4, "big")
    hash3 = _prf(hname, h(p1["skeyid_a"]), b"\0" + mid + h(p2["ni_b"]) + h(p2["nr_b"]))
    assert hash3.hex() == p2["hash3"], "Quick Mode nonces extracted wrongly"
    block = IKE_CIPHERS[sc.ike_cipher][3]
    iv = hashlib.new(hname, h(p2["phase1_last_iv"]) + mid).digest()[:block]
    assert iv.hex() == p2["iv"], "Quick Mode IV / phase 1 IV extracted wrongly"
    for side in (sa_i, sa_r):
        assert side["ike"]["initiator-spi"] == p1["cky_i"]
        assert side["ike"]["responder-spi"] == p1["cky_r"]
    out_i, out_r = sa_i["child"]["spi-out"], sa_r["child"]["spi-out"]
    assert [sa["spi"] for sa in p2["sas"]] == [out_i, out_r], "SPIs do not match swanctl"


def build_vector(sc: Scenario, v: dict[str, Any], sa_i: dict[str, Any],
                 configs: dict[str, str]) -> dict[str, Any]:
    """The JSON document for one scenario."""
    cipher, cipher_id, key_bits, block = IKE_CIPHERS[sc.ike_cipher]
    hash_name, hash_id = IKE_HASHES[sc.ike_hash]
    group_name, group_id = GROUPS[sc.group]
    esp_name, esp_id, esp_bits = ESP_CIPHERS[sc.esp_cipher]
    p1, p2 = v["phase1"], v["phase2"]
    phase1 = {
        "exchange": "aggressive" if sc.aggressive else "main",
        "exchange_type": p1.pop("exchange"),
        "auth_method": "PRE_SHARED", "auth_method_id": 1,
        "encryption_algorithm": cipher, "encryption_algorithm_id": cipher_id,
        "key_length": key_bits, "cipher_block_size": block,
        "hash_algorithm": hash_name, "hash_algorithm_id": hash_id,
        "group": group_name, "group_id": group_id,
        "psk": sc.psk.hex(),
        **p1,
    }
    pfs = None
    if sc.pfs_group:
        pfs_name, pfs_id = GROUPS[sc.pfs_group]
        pfs = {"group": pfs_name, "group_id": pfs_id}
    auth_name, auth_id = ESP_AUTHS[sc.esp_auth] if sc.esp_auth else (None, None)
    phase2 = {
        "protocol": "IPSEC_ESP", "protocol_id": p2.pop("protocol"),
        "transform": esp_name, "transform_id": esp_id, "key_length": esp_bits,
        "auth_algorithm": auth_name, "auth_algorithm_id": auth_id,
        "encapsulation": "UDP_ENCAP_TUNNEL (RFC 3947; kernel-libipsec forces NAT-T)",
        "pfs": pfs,
        "message_id_hex": f"{p2['message_id']:08x}",
        **p2,
    }
    return {
        "name": sc.name,
        "description": sc.description,
        "source": {
            "implementation": "strongSwan charon",
            "version": charon_version(),
            "package": package_version(),
            "generated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "script": SCRIPT,
            "log_excerpt": f"strongswan-{sc.name}.log",
            "log_levels": LOG_LEVELS,
            "kernel_backend": "kernel-libipsec (userspace ESP; forces NAT-T)",
            "initiator": sc.initiator, "responder": sc.responder,
            "negotiated (swanctl --list-sas --raw, initiator)": {
                k: sa_i["ike"].get(k) for k in (
                    "encr-alg", "encr-keysize", "integ-alg", "prf-alg", "dh-group")
            } | {"child " + k: sa_i["child"].get(k) for k in (
                "protocol", "mode", "encap", "encr-alg", "encr-keysize", "integ-alg",
                "dh-group", "spi-in", "spi-out")},
            "configuration": configs,
        },
        "notes": [
            ("All byte strings are lower-case hex. Payload values are bodies without the "
             "4-byte generic header (RFC 2409 names: Ni_b, Nr_b, SAi_b, IDii_b, IDir_b)."),
            ("phase1.cipher_key is charon's 'encryption key Ka': SKEYID_e truncated, or "
             "expanded by RFC 2409 appendix B when SKEYID_e is shorter."),
            ("phase1.iv is the IV of the first encrypted message, hash(g^xi | g^xr) "
             "truncated; phase2.iv is hash(phase2.phase1_last_iv | M-ID) truncated."),
            ("phase2.sas[].seed is charon's KEYMAT seed [g(qm)^xy |] protocol | SPI | "
             "Ni_b | Nr_b; each SA's SPI is the one its receiver chose."),
            ("ESP keys: encryption key (with salt for AES-GCM) first, then the integrity "
             "key, both from KEYMAT = K1 | K2 | ... (RFC 2409 section 5.5)."),
            ("phase1.encrypted / phase2.encrypted: the encrypted datagrams as received "
             "(4 zero bytes first when sent to port 4500), in exchange order."),
        ],
        "phase1": phase1,
        "phase2": phase2,
    }


def write_excerpt(path: Path, sc: Scenario, log_i: str, log_r: str, mid: int) -> None:
    """Write the log lines the vector came from, initiator then responder."""
    lines = [
        f"# strongSwan charon log excerpt for tests/vectors/strongswan-{sc.name}.json",
        f"# written by {SCRIPT}; log levels {LOG_LEVELS}",
        "# only lines carrying values (and a few context lines) are kept",
        f"# === initiator {sc.initiator}",
        *excerpt(parse_log(log_i), qm_message_id=mid),
        f"# === responder {sc.responder}",
        *excerpt(parse_log(log_r), qm_message_id=mid),
    ]
    path.write_text("\n".join(lines) + "\n")


def make(sc: Scenario, out_dir: Path, keep: Path | None) -> Path:
    """Run *sc* and write its two files; return the JSON path."""
    with tempfile.TemporaryDirectory(prefix="ssv-") as tmp:
        workdir = keep / sc.name if keep else Path(tmp)
        t0 = time.monotonic()
        log_i, log_r, sa_i, sa_r, configs = run_pair(sc, workdir)
        elapsed = time.monotonic() - t0
    v = extract_vector(parse_log(log_i), parse_log(log_r))
    sanity_check(sc, v, sa_i, sa_r)
    mid = v["phase2"]["message_id"]
    doc = build_vector(sc, v, sa_i, configs)
    json_path = out_dir / f"strongswan-{sc.name}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    write_excerpt(out_dir / f"strongswan-{sc.name}.log", sc, log_i, log_r, mid)
    print(f"{sc.name}: {json_path} ({elapsed:.1f}s)")
    return json_path


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--out", type=Path, default=VECTOR_DIR, help="output directory")
    parser.add_argument("--keep", type=Path, help="keep charon work dirs under this dir")
    parser.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name}: {sc.description}")
        return 0
    reason = need_root_and_tools() or need_charon()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    chosen = [sc for sc in SCENARIOS if not args.names or sc.name in args.names]
    unknown = set(args.names) - {sc.name for sc in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for sc in chosen:
        make(sc, args.out, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
