"""Tests of isakmpd.transport.udp over real loopback UDP sockets.

Two transports (127.0.0.1 and 127.0.0.2, or ::1) bind ephemeral ports (port 0, read
back with ``endpoint``) and talk through the real reactor. To show that something
was dropped, a test sends it and then a marker message on the same path: loopback
UDP from one socket keeps its order, so once the marker has arrived the dropped
datagram would have arrived before it. Waiting is event driven, with a deadline.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from isakmpd.transport.interface import IDatagramHandler, ISender
from isakmpd.transport.udp import (
    BindError,
    UdpTransport,
    describe_bind_error,
    normalise_address,
    select_listen_addresses,
)

MARKER = b"\0\0\0\0"
DEADLINE = 5.0          # seconds; loopback delivers in well under a millisecond


def _bindable(family: int, address: str) -> bool:
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


class _Waiter:
    """Deferreds fired when a list has grown to a wanted length, with a deadline."""

    def __init__(self, items: list) -> None:
        self.items = items
        self._waiting: list[tuple[int, defer.Deferred, object]] = []

    def wait(self, count: int) -> defer.Deferred:
        result: defer.Deferred = defer.Deferred()
        if len(self.items) >= count:
            result.callback(list(self.items))
            return result

        def expire() -> None:
            self._waiting[:] = [w for w in self._waiting if w[1] is not result]
            result.errback(AssertionError(
                f"only {len(self.items)} of {count} datagrams within {DEADLINE}s: "
                f"{self.items!r}"))

        timer = reactor.callLater(DEADLINE, expire)
        self._waiting.append((count, result, timer))
        return result

    def notify(self) -> None:
        for entry in list(self._waiting):
            count, result, timer = entry
            if len(self.items) >= count:
                self._waiting.remove(entry)
                timer.cancel()
                result.callback(list(self.items))


@implementer(IDatagramHandler)
class RecordingHandler:
    """The engine's place: records (data, local, remote); may raise on some data."""

    def __init__(self, raise_on: bytes | None = None) -> None:
        self.received: list[tuple[bytes, tuple[str, int], tuple[str, int]]] = []
        self.waiter = _Waiter(self.received)
        self.raise_on = raise_on

    def datagram_received(self, data: bytes, local: tuple[str, int],
                          remote: tuple[str, int]) -> None:
        if data == self.raise_on:
            raise ZeroDivisionError("the handler broke")
        self.received.append((data, local, remote))
        self.waiter.notify()


class RawPeer(DatagramProtocol):
    """A plain UDP socket: sends exact bytes and records exact bytes."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.waiter = _Waiter(self.received)

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        self.received.append((data, (addr[0], addr[1])))
        self.waiter.notify()


class _LogCapture:
    def __init__(self, case: TestCase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self, level_name: str) -> list[str]:
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events
                if e.get("log_level") is not None and e["log_level"].name == level_name
                and e.get("log_namespace") == "isakmpd.transport"]


class TransportTestBase(TestCase):
    first = "127.0.0.1"
    second = "127.0.0.2"

    def make(self, address: str, handler: RecordingHandler | None = None,
             nat_t: bool = True) -> tuple[UdpTransport, RecordingHandler]:
        handler = handler or RecordingHandler()
        transport = UdpTransport(reactor, handler, [address], port=0,
                                 nat_t_port=0 if nat_t else None)
        transport.start()
        self.addCleanup(transport.stop)
        return transport, handler

    def raw(self, address: str) -> tuple[RawPeer, tuple[str, int]]:
        peer = RawPeer()
        port = reactor.listenUDP(0, peer, interface=address)
        self.addCleanup(port.stopListening)
        return peer, (address, port.getHost().port)


class LoopbackTests(TransportTestBase):
    def setUp(self) -> None:
        if not _bindable(socket.AF_INET, self.second):
            raise self.skipTest(f"cannot bind {self.second} (loopback is not 127.0.0.0/8)")
        self.a, self.ha = self.make(self.first)
        self.b, self.hb = self.make(self.second)
        self.a500 = self.a.endpoint(self.first)
        self.a4500 = self.a.endpoint(self.first, nat_t=True)
        self.b500 = self.b.endpoint(self.second)
        self.b4500 = self.b.endpoint(self.second, nat_t=True)

    def test_provides_isender(self) -> None:
        self.assertTrue(verifyObject(ISender, self.a))
        self.assertTrue(verifyObject(IDatagramHandler, self.ha))

    def test_endpoints(self) -> None:
        self.assertEqual(self.a.addresses, [self.first])
        self.assertNotEqual(self.a500[1], 0)
        self.assertNotEqual(self.a4500[1], 0)
        self.assertNotEqual(self.a500, self.a4500)
        self.assertEqual(sorted(self.a.endpoints()),
                         sorted([(self.a500, False), (self.a4500, True)]))
        self.assertTrue(self.a.is_nat_t(self.a4500))
        self.assertFalse(self.a.is_nat_t(self.a500))

    @defer.inlineCallbacks
    def test_exchange_on_the_normal_port(self):
        self.a.send(b"first message", self.a500, self.b500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"first message", self.b500, self.a500)])
        self.b.send(b"reply", self.b500, self.a500)
        received = yield self.ha.waiter.wait(1)
        self.assertEqual(received, [(b"reply", self.a500, self.b500)])

    @defer.inlineCallbacks
    def test_exchange_on_the_nat_t_port(self):
        self.a.send(b"over 4500", self.a4500, self.b4500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"over 4500", self.b4500, self.a4500)])
        self.b.send(b"reply over 4500", self.b4500, self.a4500)
        received = yield self.ha.waiter.wait(1)
        self.assertEqual(received, [(b"reply over 4500", self.a4500, self.b4500)])

    @defer.inlineCallbacks
    def test_marker_added_on_nat_t_port_only(self):
        peer, where = self.raw(self.second)
        self.a.send(b"ike", self.a4500, where)
        self.a.send(b"ike", self.a500, where)
        received = yield peer.waiter.wait(2)
        self.assertEqual(sorted(received), sorted([(MARKER + b"ike", self.a4500),
                                                   (b"ike", self.a500)]))

    @defer.inlineCallbacks
    def test_marker_stripped_on_nat_t_port_only(self):
        peer, where = self.raw(self.first)
        peer.transport.write(MARKER + b"ike", self.b4500)
        peer.transport.write(MARKER + b"ike", self.b500)
        received = yield self.hb.waiter.wait(2)
        self.assertEqual(sorted(received), sorted([(b"ike", self.b4500, where),
                                                   (MARKER + b"ike", self.b500, where)]))

    @defer.inlineCallbacks
    def test_keepalives_dropped_on_nat_t_port(self):
        logs = _LogCapture(self)
        peer, where = self.raw(self.first)
        peer.transport.write(b"\xff", self.b4500)
        peer.transport.write(MARKER + b"after the keepalive", self.b4500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"after the keepalive", self.b4500, where)])
        # Silently: a keepalive is normal traffic, not a malformed datagram.
        self.assertEqual([t for t in logs.texts("debug") if "dropped" in t], [])

    @defer.inlineCallbacks
    def test_single_ff_on_normal_port_is_passed_on(self):
        peer, where = self.raw(self.first)
        peer.transport.write(b"\xff", self.b500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"\xff", self.b500, where)])

    @defer.inlineCallbacks
    def test_garbage_on_nat_t_port_dropped(self):
        logs = _LogCapture(self)
        peer, where = self.raw(self.first)
        for junk in (b"\x12\x34\x56\x78" + b"esp-like payload", b"\0\0", b"", b"\xff\xff"):
            peer.transport.write(junk, self.b4500)
        peer.transport.write(MARKER + b"real", self.b4500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"real", self.b4500, where)])
        dropped = [t for t in logs.texts("debug") if "without non-ESP marker" in t]
        self.assertEqual(len(dropped), 4, logs.texts("debug"))
        self.assertIn(f"dropped a 20-byte datagram without non-ESP marker from "
                      f"{where[0]}:{where[1]}", dropped[0])

    @defer.inlineCallbacks
    def test_keepalive_sent(self):
        peer, where = self.raw(self.second)
        self.a.send_keepalive(self.a4500, where)
        received = yield peer.waiter.wait(1)
        self.assertEqual(received, [(b"\xff", self.a4500)])

    @defer.inlineCallbacks
    def test_keepalive_not_sent_from_normal_port(self):
        logs = _LogCapture(self)
        peer, where = self.raw(self.second)
        self.a.send_keepalive(self.a500, where)
        self.a.send(b"next", self.a500, where)
        received = yield peer.waiter.wait(1)
        self.assertEqual(received, [(b"next", self.a500)])
        self.assertEqual(logs.texts("error"), [
            (f"not sending a NAT-keepalive from {self.first}:{self.a500[1]}: it is not a "
            "NAT-T port")])

    @defer.inlineCallbacks
    def test_raising_handler_does_not_break_the_port(self):
        logs = _LogCapture(self)
        self.hb.raise_on = b"poison"
        self.a.send(b"poison", self.a500, self.b500)
        self.a.send(b"next", self.a500, self.b500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"next", self.b500, self.a500)])
        errors = logs.texts("error")
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0], f"handling a 6-byte datagram from {self.first}:"
                                    f"{self.a500[1]} on {self.second}:{self.b500[1]} failed: "
                                    "ZeroDivisionError: the handler broke")
        self.assertNotIn("\n", errors[0])
        self.assertTrue(any("Traceback" in t for t in logs.texts("debug")))

    @defer.inlineCallbacks
    def test_large_datagram(self):
        big = bytes(range(256)) * 80      # 20480 bytes, more than Twisted's 8192 default
        self.a.send(big, self.a4500, self.b4500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received[0][0], big)

    def test_send_from_unbound_address_is_logged(self) -> None:
        logs = _LogCapture(self)
        self.a.send(b"x", (self.second, self.b500[1]), self.b500)
        self.a.send(b"x", ("not an address", 500), self.b500)
        self.a.send(b"x", self.a500, ("peer.example", 500))
        self.a.send(b"x", self.a500, ("2001:db8::1", 500))
        errors = logs.texts("error")
        self.assertEqual(len(errors), 4, errors)
        self.assertIn("cannot send a 1-byte message to ('127.0.0.2', "
                      f"{self.b500[1]}): no socket is bound to ('127.0.0.2', {self.b500[1]})",
                      errors[0])
        self.assertIn("not a numeric address and port", errors[2])
        self.assertIn("address families differ", errors[3])

    @defer.inlineCallbacks
    def test_addresses_removed_and_added_at_run_time(self):
        yield self.b.remove_address(self.second)
        self.assertEqual(self.b.addresses, [])
        self.assertIsNone(self.b.endpoint(self.second))
        self.assertFalse(self.b.is_nat_t(self.b4500))
        # Removing again is harmless.
        yield self.b.remove_address(self.second)
        yield self.b.update_addresses([self.second])
        self.assertEqual(self.b.addresses, [self.second])
        b500 = self.b.endpoint(self.second)
        self.a.send(b"again", self.a500, b500)
        received = yield self.hb.waiter.wait(1)
        self.assertEqual(received, [(b"again", b500, self.a500)])
        # update_addresses closes addresses no longer listed.
        yield self.b.update_addresses([])
        self.assertEqual(self.b.addresses, [])

    @defer.inlineCallbacks
    def test_without_nat_t(self):
        c, hc = self.make(self.second, nat_t=False)
        self.assertIsNone(c.endpoint(self.second, nat_t=True))
        self.assertEqual(len(c.endpoints()), 1)
        c500 = c.endpoint(self.second)
        self.a.send(MARKER + b"x", self.a500, c500)
        received = yield hc.waiter.wait(1)
        self.assertEqual(received, [(MARKER + b"x", c500, self.a500)])


class BindErrorTests(TransportTestBase):
    def test_same_port_twice(self) -> None:
        first, _ = self.make(self.first)
        port = first.endpoint(self.first)[1]
        second = UdpTransport(reactor, RecordingHandler(), [self.first], port=port,
                              nat_t_port=0)
        error = self.assertRaises(BindError, second.start)
        self.assertEqual(str(error), f"cannot listen on address {self.first} port {port}: "
                                     "address already in use (is another IKE daemon "
                                     "running?)")
        self.assertEqual((error.address, error.port), (self.first, port))
        self.assertEqual(second.addresses, [])
        return second.stop()

    @defer.inlineCallbacks
    def test_nat_t_port_in_use_undoes_the_normal_port(self):
        first, _ = self.make(self.first)
        nat_t = first.endpoint(self.first, nat_t=True)[1]
        free = _free_port(self.first)
        second = UdpTransport(reactor, RecordingHandler(), [self.first], port=free,
                              nat_t_port=nat_t)
        error = self.assertRaises(BindError, second.start)
        self.assertIn(f"NAT-T port {nat_t}: address already in use", str(error))
        yield second.stop()
        # The normal port bound before the failure has been released.
        third, _ = self.make(self.first)
        yield third.stop()
        again = UdpTransport(reactor, RecordingHandler(), [self.first], port=free,
                             nat_t_port=None)
        again.start()
        yield again.stop()

    def test_address_not_configured(self) -> None:
        address = "203.0.113.254"
        if _bindable(socket.AF_INET, address):
            raise self.skipTest(f"{address} is configured here")
        transport = UdpTransport(reactor, RecordingHandler(), [address], port=0)
        error = self.assertRaises(BindError, transport.start)
        self.assertIn(f"cannot listen on address {address} port 0: address not available",
                      str(error))

    def test_permission_denied_through_another_reactor(self) -> None:
        # A reactor that only provides IReactorUDP: the transport uses its listenUDP.
        @implementer(IReactorUDP)
        class Refusing:
            def __init__(self) -> None:
                self.calls: list = []

            def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
                self.calls.append((port, interface, maxPacketSize))
                raise CannotListenError(interface, port, PermissionError(errno.EACCES, "x"))

        fake = Refusing()
        transport = UdpTransport(fake, RecordingHandler(), ["192.0.2.1"])
        error = self.assertRaises(BindError, transport.start)
        self.assertEqual(str(error), "cannot listen on address 192.0.2.1 port 500: permission "
                                     "denied: ports below 1024 need root or "
                                     "CAP_NET_BIND_SERVICE")
        self.assertEqual(fake.calls, [(500, "192.0.2.1", 65535)])

    def test_same_ports_refused(self) -> None:
        self.assertRaises(ValueError, UdpTransport, reactor, RecordingHandler(), [], 4500,
                          4500)

    def test_not_an_address(self) -> None:
        self.assertRaises(ValueError, UdpTransport, reactor, RecordingHandler(), ["eth0"])


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class IPv6Tests(TransportTestBase):
    def setUp(self) -> None:
        if not _bindable(socket.AF_INET6, "::1"):
            raise self.skipTest("IPv6 loopback ::1 is not available")

    @defer.inlineCallbacks
    def test_exchange_over_ipv6(self):
        a, _ha = self.make("0:0::1")
        b, hb = self.make("::1")
        a500, b500 = a.endpoint("::1"), b.endpoint("::1")
        a4500, b4500 = a.endpoint("::1", nat_t=True), b.endpoint("::1", nat_t=True)
        self.assertEqual(a500[0], "::1")
        a.send(b"v6", a500, b500)
        a.send(b"v6 nat-t", a4500, ("0::0:1", b4500[1]))
        received = yield hb.waiter.wait(2)
        self.assertEqual(sorted(received), sorted([(b"v6", b500, a500),
                                                   (b"v6 nat-t", b4500, a4500)]))

    def test_sockets_are_v6only(self) -> None:
        # Linux makes a socket bound to a specific IPv6 address v6only by itself; the
        # wildcard shows that the transport sets the option before binding.
        a, _ = self.make("::")
        for local, _nat_t in a.endpoints():
            protocol = a._lookup(local)
            value = protocol.transport.socket.getsockopt(socket.IPPROTO_IPV6,
                                                         socket.IPV6_V6ONLY)
            self.assertEqual(value, 1)


class PureHelperTests(SynchronousTestCase):
    def test_normalise_address(self) -> None:
        self.assertEqual(normalise_address("2001:DB8:0:0:0:0:0:1"), "2001:db8::1")
        self.assertEqual(normalise_address("fe80::1%eth0"), "fe80::1")
        self.assertEqual(normalise_address("192.0.2.1"), "192.0.2.1")
        self.assertRaises(ValueError, normalise_address, "gateway.example")

    def test_bind_error_words(self) -> None:
        def text(code: int, port: int = 500) -> str:
            return describe_bind_error("192.0.2.1", port, OSError(code, "x"))

        self.assertEqual(text(errno.EACCES), "cannot listen on address 192.0.2.1 port 500: "
                         "permission denied: ports below 1024 need root or "
                         "CAP_NET_BIND_SERVICE")
        self.assertEqual(text(errno.EACCES, 5000), "cannot listen on address 192.0.2.1 port "
                         "5000: permission denied")
        self.assertIn("address already in use", text(errno.EADDRINUSE))
        self.assertIn("not configured on any interface", text(errno.EADDRNOTAVAIL))
        self.assertIn("is IPv6 disabled?", text(errno.EAFNOSUPPORT))
        self.assertIn("port 500: x", text(errno.ENOBUFS))
        self.assertIn("NAT-T port 4500", describe_bind_error("192.0.2.1", 4500, None, True))

    def test_select_listen_addresses(self) -> None:
        available = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "192.0.2.1"),
                     (socket.AF_INET6, "::1"), (socket.AF_INET6, "2001:db8::1")]
        self.assertEqual(select_listen_addresses(None, available),
                         (["127.0.0.1", "192.0.2.1", "::1", "2001:db8::1"], []))
        self.assertEqual(select_listen_addresses([], available, [socket.AF_INET6]),
                         (["::1", "2001:db8::1"], []))
        chosen, warnings = select_listen_addresses(
            ["2001:DB8::1", "192.0.2.1", "eth0", "198.51.100.1", "192.0.2.1"], available)
        self.assertEqual(chosen, ["2001:db8::1", "192.0.2.1"])
        self.assertEqual(warnings, [
            "[General] Listen-on: 'eth0' is not a numeric IP address, ignored",
            ("[General] Listen-on: 198.51.100.1 is not an address of any up interface, "
            "not bound"),
        ])
        chosen, warnings = select_listen_addresses(["2001:db8::1", "192.0.2.1"], available,
                                                   [socket.AF_INET])
        self.assertEqual(chosen, ["192.0.2.1"])
        self.assertIn("its address family is disabled", warnings[0])


class PrepareSocketTests(TransportTestBase):
    """``prepare_socket`` (the XFRM bypass in production) sees every socket before bind."""

    def test_every_socket_prepared_before_bind(self) -> None:
        seen: list[tuple[int, bool, tuple]] = []

        def prepare(sock: socket.socket, family: int, nat_t: bool) -> None:
            seen.append((family, nat_t, sock.getsockname()))

        transport = UdpTransport(reactor, RecordingHandler(), [self.first], port=0,
                                 nat_t_port=0, prepare_socket=prepare)
        transport.start()
        self.addCleanup(transport.stop)
        # Not yet bound when prepared: the wildcard address and port 0.
        self.assertEqual(seen, [(socket.AF_INET, False, ("0.0.0.0", 0)),
                                (socket.AF_INET, True, ("0.0.0.0", 0))])

    def test_without_prepare_nothing_is_called(self) -> None:
        # -n: no hook, the sockets are plain (the lack of CAP_NET_ADMIN never matters).
        transport, _ = self.make(self.first)
        self.assertEqual(len(transport.endpoints()), 2)

    def test_prepare_failure_is_a_bind_error_in_its_words(self) -> None:
        calls: list[bool] = []

        def refuse(sock: socket.socket, family: int, nat_t: bool) -> None:
            calls.append(nat_t)
            if nat_t:
                raise OSError(errno.EPERM, "cannot make the IKE socket bypass IPsec "
                                           "(IP_XFRM_POLICY): not permitted")

        free = _free_port(self.first)
        transport = UdpTransport(reactor, RecordingHandler(), [self.first], port=free,
                                 nat_t_port=0, prepare_socket=refuse)
        error = self.assertRaises(BindError, transport.start)
        self.assertEqual(str(error), f"cannot listen on address {self.first} NAT-T port 0: "
                                     "cannot make the IKE socket bypass IPsec "
                                     "(IP_XFRM_POLICY): not permitted")
        self.assertEqual(calls, [False, True])
        self.assertEqual(transport.addresses, [])
        d = transport.stop()

        def rebind(_: object) -> None:
            # The first port, bound before the failure, was released.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((self.first, free))

        return d.addCallback(rebind)

    def test_prepare_needs_an_fdset_reactor(self) -> None:
        @implementer(IReactorUDP)
        class UdpOnly:
            def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
                raise AssertionError("must not bind without preparing")

        transport = UdpTransport(UdpOnly(), RecordingHandler(), ["192.0.2.1"],
                                 prepare_socket=lambda sock, family, nat_t: None)
        error = self.assertRaises(BindError, transport.start)
        self.assertIn("cannot be prepared before bind", str(error))
