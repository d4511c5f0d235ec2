"""Tests of isakmpd.config.validate and the sample conf/isakmpd.conf."""

import os

from twisted.trial.unittest import SynchronousTestCase

from isakmpd.config import Severity, load_config, validate
from isakmpd.config.parser import Diagnostic
from isakmpd.config.store import load

SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "conf", "isakmpd.conf")

GOOD = """\
[Phase 1]
198.51.100.1=peer

[Phase 2]
Connections=conn

[peer]
Phase=1
Address=198.51.100.1
Configuration=p1
Authentication=secret

[p1]
EXCHANGE_TYPE=ID_PROT
Transforms=AES-256-SHA2-256-GRP14

[conn]
Phase=2
ISAKMP-peer=peer
Configuration=p2
Local-ID=here
Remote-ID=there

[p2]
EXCHANGE_TYPE=QUICK_MODE
Suites=QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE

[here]
ID-type=IPV4_ADDR_SUBNET
Network=203.0.113.0
Netmask=255.255.255.128

[there]
ID-type=IPV4_ADDR_SUBNET
Network=203.0.113.128
Netmask=255.255.255.128
"""


def check(text: str) -> list[Diagnostic]:
    return load_config(text, "t.conf")[1]


def with_changes(**changes: str) -> str:
    """GOOD with some 'section.tag' lines replaced (value None removes)."""
    lines = GOOD.splitlines()
    for key, value in changes.items():
        section, tag = key.split("__")
        tag = tag if tag.isupper() else tag.replace("_", "-")
        section = section.replace("_", "-") if section != "phase_2" else "Phase 2"
        start = lines.index(f"[{section}]")
        index = start + 1
        while index < len(lines) and lines[index] and not lines[index].startswith(tag + "="):
            index += 1
        if index < len(lines) and lines[index].startswith(tag + "="):
            if value:
                lines[index] = f"{tag}={value}"
            else:
                del lines[index]
        else:
            lines.insert(start + 1, f"{tag}={value}")
    return "\n".join(lines) + "\n"


class ValidateTests(SynchronousTestCase):
    def errors(self, text: str) -> list[Diagnostic]:
        return [d for d in check(text) if d.severity is Severity.ERROR]

    def one_error(self, text: str, section: str, tag: str | None, *words: str) -> Diagnostic:
        errors = self.errors(text)
        self.assertEqual(len(errors), 1, [str(e) for e in errors])
        error = errors[0]
        self.assertEqual((error.file, error.section, error.tag), ("t.conf", section, tag))
        self.assertIsNotNone(error.line)
        for word in words:
            self.assertIn(word, str(error))
        return error

    def test_good_has_no_diagnostics(self) -> None:
        self.assertEqual([str(d) for d in check(GOOD)], [])

    def test_missing_transform_section(self) -> None:
        error = self.one_error(with_changes(p1__Transforms="FOO"), "p1", "Transforms",
                               "[FOO]", "does not exist")
        self.assertEqual(error.line, GOOD.splitlines().index("Transforms=AES-256-SHA2-256-GRP14")
                         + 1)

    def test_did_you_mean(self) -> None:
        self.one_error(with_changes(p1__Transforms="AES-256-SHA256-GRP14"), "p1", "Transforms",
                       "did you mean [AES-256-SHA2-256-GRP14]")

    def test_missing_peer_in_phase_1(self) -> None:
        text = GOOD.replace("198.51.100.1=peer", "198.51.100.1=nope")
        self.one_error(text, "Phase 1", "198.51.100.1", "[nope]")

    def test_missing_connection_sections(self) -> None:
        for tag in ("ISAKMP-peer", "Configuration", "Local-ID", "Remote-ID"):
            self.one_error(with_changes(**{f"conn__{tag}": "ghost"}), "conn", tag, "[ghost]")
        self.one_error(GOOD.replace("Connections=conn", "Connections=conn,ghost"),
                       "Phase 2", "Connections", "[ghost]")
        self.one_error(with_changes(p2__Suites="ghost"), "p2", "Suites", "[ghost]")

    def test_missing_required_tags(self) -> None:
        error = self.one_error(with_changes(p1__EXCHANGE_TYPE=""), "p1", None, "EXCHANGE_TYPE")
        self.assertEqual(error.line, GOOD.splitlines().index("[p1]") + 1)
        self.one_error(with_changes(peer__Address=""), "peer", None, "Address")
        self.one_error(with_changes(conn__Phase=""), "conn", None, "Phase")
        self.one_error(with_changes(here__Netmask=""), "here", None, "Netmask")

    def test_bad_numbers(self) -> None:
        self.one_error(GOOD + "[General]\nRetransmits=three\n", "General", "Retransmits")
        self.one_error(with_changes(peer__Port="99999"), "peer", "Port")
        self.one_error(GOOD + "[General]\nDefault-phase-1-lifetime=10,20:5\n", "General",
                       "Default-phase-1-lifetime")

    def test_unknown_and_unsupported_algorithms(self) -> None:
        text = GOOD.replace("Transforms=AES-256-SHA2-256-GRP14", "Transforms=x") + (
            "[x]\nENCRYPTION_ALGORITHM={}\nHASH_ALGORITHM=SHA\n"
            "AUTHENTICATION_METHOD={}\nGROUP_DESCRIPTION={}\n")
        self.one_error(text.format("ROT13", "PRE_SHARED", "MODP_2048"), "x",
                       "ENCRYPTION_ALGORITHM", "unknown")
        for cipher in ("DES_CBC", "IDEA_CBC"):
            self.one_error(text.format(cipher, "PRE_SHARED", "MODP_2048"), "x",
                           "ENCRYPTION_ALGORITHM", "not supported")
        self.one_error(text.format("AES_CBC", "DSS", "MODP_2048"), "x",
                       "AUTHENTICATION_METHOD", "DSS is not supported")
        self.one_error(text.format("AES_CBC", "PRE_SHARED", "EC2N_155"), "x",
                       "GROUP_DESCRIPTION", "not supported")
        self.one_error(text.format("AES_CBC", "PRE_SHARED", "ECP_192"), "x",
                       "GROUP_DESCRIPTION", "not supported")
        self.assertEqual(self.errors(text.format("any", "ANY", "ANY"))[0].tag,
                         "ENCRYPTION_ALGORITHM")     # ANY is case-sensitive

    def test_generated_dss_is_reported_at_the_users_line(self) -> None:
        error = self.one_error(with_changes(p1__Transforms="AES-SHA-DSS"), "AES-SHA-DSS",
                               "AUTHENTICATION_METHOD", "generated", "[p1]:Transforms", "DSS")
        self.assertEqual(error.line, GOOD.splitlines().index("[p1]") + 3)

    def test_bad_addresses(self) -> None:
        self.one_error(with_changes(peer__Address="gw.example.org"), "peer", "Address",
                       "numeric")
        self.one_error(with_changes(here__Network="203.0.113.300"), "here", "Network")
        self.one_error(with_changes(here__Network="2001:db8::"), "here", "Network", "IPv4")
        for ok in ("eth0", "default", "wg-site.1"):
            self.assertEqual(self.errors(with_changes(here__Network=ok)), [], ok)

    def test_bad_id_type(self) -> None:
        self.one_error(with_changes(here__ID_type="FQDN"), "here", "ID-type",
                       "IPV4_ADDR_SUBNET")

    def test_port_without_protocol(self) -> None:
        self.one_error(with_changes(here__Port="500"), "here", "Port", "Protocol")
        self.assertEqual(self.errors(with_changes(here__Port="500", here__Protocol="udp")), [])

    def test_mixed_pfs_groups(self) -> None:
        self.one_error(with_changes(p2__Suites="QM-ESP-AES-SHA-PFS-SUITE,"
                                    "QM-ESP-AES-SHA-PFS-GRP14-SUITE"), "p2", "Suites",
                       "GROUP_DESCRIPTION")

    def test_passive_needs_local_id(self) -> None:
        text = GOOD.replace("Connections=conn", "Passive-connections=conn")
        self.assertEqual(self.errors(text), [])
        self.one_error(with_changes(conn__Local_ID="").replace("Connections=conn",
                                                               "Passive-connections=conn"),
                       "conn", None, "Local-ID")

    def test_warnings(self) -> None:
        diagnostics = check(with_changes(peer__Adress="x", peer__Authentication="") +
                            "[General]\nUse-Keynote=Yes\n")
        self.assertTrue(all(d.severity is Severity.WARNING for d in diagnostics))
        text = " ".join(str(d) for d in diagnostics)
        self.assertIn("did you mean 'address'", text)
        self.assertIn("Authentication", text)
        self.assertIn("Use-Keynote", text)

    def test_broken_section_does_not_spoil_others(self) -> None:
        text = GOOD.replace("Connections=conn", "Connections=conn,bad") + (
            "[bad]\nPhase=2\nISAKMP-peer=peer\nConfiguration=p2bad\nLocal-ID=here\n"
            "[p2bad]\nEXCHANGE_TYPE=QUICK_MODE\nSuites=QM-ESP-DES-SUITE\n")
        result = validate(load(text, "t.conf")[0])
        self.assertEqual(len(result.errors), 1)
        self.assertFalse(result.usable("bad"))
        self.assertFalse(result.usable("p2bad"))
        self.assertTrue(result.usable("conn"))
        self.assertTrue(result.usable("peer"))

    def test_huge_numbers_are_reported_not_raised(self) -> None:
        # int() refuses strings of more than 4300 digits.
        huge = "9" * 5000
        self.one_error(GOOD + f"[General]\nRetransmits={huge}\n", "General", "Retransmits")
        self.one_error(with_changes(peer__Port=huge), "peer", "Port")
        self.one_error(GOOD + f"[General]\nLoglevel={huge}=1\n", "General", "Loglevel")
        self.one_error(GOOD + f"[General]\nDefault-phase-1-lifetime=1,{huge}:5\n",
                       "General", "Default-phase-1-lifetime", "larger")

    def test_phase_1_address_tags_in_another_spelling(self) -> None:
        # Peers are found by address (and OpenBSD compares tags case-insensitively):
        # another spelling of the address is no error.
        for spelling in ("2001:DB8::1", "2001:db8:0::1"):
            text = GOOD.replace("198.51.100.1=peer", f"{spelling}=peer").replace(
                "Address=198.51.100.1", "Address=2001:db8::1")
            self.assertEqual(self.errors(text), [], spelling)
        text = GOOD.replace("198.51.100.1=peer", "2001:db8:0::1=peer").replace(
            "Address=198.51.100.1", "Address=2001:db8::1")
        self.assertIn("2001:db8::1", " ".join(str(d) for d in check(text)))
        text = GOOD.replace("198.51.100.1=peer", "2001:DB8::1=peer").replace(
            "Address=198.51.100.1", "Address=2001:db8::1")
        self.assertEqual([str(d) for d in check(text)], [])

    def test_aes_key_length_must_be_an_aes_key_size(self) -> None:
        text = GOOD.replace("Transforms=AES-256-SHA2-256-GRP14", "Transforms=x") + (
            "[x]\nENCRYPTION_ALGORITHM=AES_CBC\nKEY_LENGTH={}\nHASH_ALGORITHM=SHA\n"
            "AUTHENTICATION_METHOD=PRE_SHARED\nGROUP_DESCRIPTION=MODP_2048\n")
        for bits in ("160", "136,128:256"):
            self.one_error(text.format(bits), "x", "KEY_LENGTH", "128, 192 or 256")
        for bits in ("128", "192,128:256", "256,256:256"):
            self.assertEqual(self.errors(text.format(bits)), [], bits)

    def test_never_raises(self) -> None:
        check("[Phase 2]\nConnections=a,b\nPassive-connections=a\n[a]\nPhase=x\n"
              "ISAKMP-peer=a\nConfiguration=a\nLocal-ID=a\n[b]\nLife=ANY\n"
              "[Phase 1]\nnot-an-ip=b\nDefault=Default-phase-1\n")


class SampleTests(SynchronousTestCase):
    def test_sample_loads_without_errors(self) -> None:
        with open(SAMPLE, encoding="utf-8") as sample:
            store, diagnostics = load_config(sample.read(), "isakmpd.conf")
        self.assertEqual([str(d) for d in diagnostics if d.severity is Severity.ERROR], [])
        self.assertEqual([str(d) for d in diagnostics], [])
        connections = store.get_list("Phase 2", "Connections")
        self.assertEqual(len(connections), 1)
        conn = connections[0]
        peer = store.get_str(conn, "ISAKMP-peer")
        self.assertEqual(store.get_str("Phase 1", store.get_str(peer, "Address")), peer)
        for transform in store.get_list(store.get_str(peer, "Configuration"), "Transforms"):
            self.assertEqual(store.get_str(transform, "GROUP_DESCRIPTION"), "MODP_2048")
            self.assertEqual(store.get_str(transform, "AUTHENTICATION_METHOD"), "PRE_SHARED")
        for suite in store.get_list(store.get_str(conn, "Configuration"), "Suites"):
            for protocol in store.get_list(suite, "Protocols"):
                self.assertEqual(store.get_str(protocol, "PROTOCOL_ID"), "IPSEC_ESP")
                for xf in store.get_list(protocol, "Transforms"):
                    self.assertEqual(store.get_str(xf, "GROUP_DESCRIPTION"), "MODP_2048")
                    self.assertEqual(store.get_str(xf, "ENCAPSULATION_MODE"), "TUNNEL")
        for tag, network in (("Local-ID", "203.0.113.0"), ("Remote-ID", "203.0.113.128")):
            self.assertEqual(store.get_str(store.get_str(conn, tag), "Network"), network)
        self.assertTrue(validate(store).usable(conn))
