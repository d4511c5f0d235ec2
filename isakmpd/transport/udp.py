"""UDP sockets for IKE: port 500, the NAT-T port 4500, and NAT-T framing.

Owns:

* :class:`IkeDatagramProtocol`, one per bound (address, port). On the NAT-T port it
  applies RFC 3948: a single 0xFF byte is a NAT-keepalive (§2.3) and is dropped; a
  datagram that starts with the 4-byte non-ESP marker (§2.2) is IKE, handed on
  without the marker; anything else there is ESP (the kernel's business once the
  socket is in UDP_ENCAP mode) or garbage, and is dropped. On the normal port every
  datagram is handed on as it is. Nothing raises out of ``datagramReceived``.
* :class:`UdpTransport`, the :class:`~isakmpd.transport.interface.ISender`: it binds
  both ports (and ``-P``'s local port) on every listen address, sends from the
  socket bound to exactly the requested local address (adding the marker on the
  NAT-T port) and follows address changes through :meth:`~UdpTransport.add_address`/:meth:`~UdpTransport.remove_address`.
* :func:`select_listen_addresses`: which addresses to bind, from ``[General]
  Listen-on`` and the interface addresses (inventory §2, ``virtual.c``).

Sockets are bound to specific addresses only (no wildcard socket), so the local
address handed to the engine is always the real one, which NAT-D hashes need
(RFC 3947 §3.2). IPv6 sockets are IPV6_V6ONLY, so IPv4-mapped addresses never
appear. Addresses are normalised: IPv6 in compressed text without scope.

With the XFRM kernel, each socket is handed before it is bound to a
``prepare_socket`` function (:func:`isakmpd.kernel.xfrm.prepare_ike_socket`: the
IPsec bypass, and UDP_ENCAP on the NAT-T port); with ``-n`` there is none, so
unprivileged runs set no privileged option.

Errors: a bind failure raises :class:`BindError`, naming address, port and the
reason in words. Sending never raises: a message that cannot be sent is logged and
dropped (the exchange's retransmission timer deals with lost datagrams either way),
so a vanished address or an unreachable network never unwinds the engine.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import traceback
from collections.abc import Callable, Iterable

from twisted.internet import defer, udp
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.interfaces import IListeningPort, IReactorFDSet, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from isakmpd.transport.interface import Address, IDatagramHandler, ISender
from isakmpd.wire.constants import ISAKMP_PORT, NAT_KEEPALIVE, NAT_T_PORT, NON_ESP_MARKER

__all__ = [
    "BindError",
    "IkeDatagramProtocol",
    "SocketPreparer",
    "UdpTransport",
    "describe_bind_error",
    "normalise_address",
    "select_listen_addresses",
]

log = Logger(namespace="isakmpd.transport")

MAX_DATAGRAM = 65535      # IKE messages with certificates exceed Twisted's 8192 default

SocketPreparer = Callable[[socket.socket, int, bool], None]
"""Called with (socket, address family, is the NAT-T port) before the bind; raises
OSError whose text says what failed."""


def normalise_address(text: str) -> str:
    """Numeric address text in canonical form: IPv6 compressed, scope id removed.

    Raises ValueError for anything that is not a numeric IPv4 or IPv6 address.
    """
    return ipaddress.ip_address(text.split("%", 1)[0]).compressed


def _endpoint_text(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BindError(Exception):
    """A socket could not be bound; the message names address, port and reason."""

    def __init__(self, address: str, port: int, message: str) -> None:
        super().__init__(message)
        self.address = address
        self.port = port


def describe_bind_error(address: str, port: int, error: BaseException | None,
                        nat_t: bool = False) -> str:
    """A sentence saying which bind failed and why, in words a user can act on."""
    code = getattr(error, "errno", None)
    if code is None and error is not None and error.args and isinstance(error.args[0], int):
        code = error.args[0]
    if code == errno.EADDRINUSE:
        reason = "address already in use (is another IKE daemon running?)"
    elif code == errno.EACCES:
        reason = "permission denied"
        if 0 < port < 1024:
            reason += ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
    elif code == errno.EADDRNOTAVAIL:
        reason = "address not available (it is not configured on any interface)"
    elif code == errno.EAFNOSUPPORT:
        reason = "address family not supported (is IPv6 disabled?)"
    elif code is not None:
        reason = errno.errorcode.get(code, str(code))
        text = getattr(error, "strerror", None)
        if text and text != os.strerror(code):
            reason = text                   # our own words (e.g. prepare_socket's)
        else:
            reason = text.lower() if text else reason
    else:
        reason = str(error) if error is not None else "unknown error"
    kind = "NAT-T port" if nat_t else "port"
    return f"cannot listen on address {address} {kind} {port}: {reason}"


class IkeDatagramProtocol(DatagramProtocol):
    """The protocol on one bound (address, port); hands IKE messages to the handler."""

    def __init__(self, handler: IDatagramHandler, address: str, nat_t: bool) -> None:
        self.handler = handler
        self.address = normalise_address(address)
        self.nat_t = nat_t
        self.port = 0            # the real port, known once bound (port 0 = any)

    @property
    def local(self) -> Address:
        return (self.address, self.port)

    def startProtocol(self) -> None:
        self.port = self.transport.getHost().port

    def datagramReceived(self, data: bytes, addr: tuple) -> None:
        try:
            remote = (normalise_address(addr[0]), int(addr[1]))
        except (ValueError, IndexError, TypeError):
            log.debug("dropped a datagram from unusable address {addr!r}", addr=addr)
            return
        if self.nat_t:
            if data == NAT_KEEPALIVE:
                return                          # RFC 3948 §2.3
            if not data.startswith(NON_ESP_MARKER):
                # ESP-in-UDP (the kernel's once UDP_ENCAP is set) or garbage.
                log.debug("dropped a {size}-byte datagram without non-ESP marker from "
                          "{remote} on {local}", size=len(data),
                          remote=_endpoint_text(remote), local=_endpoint_text(self.local))
                return
            data = data[len(NON_ESP_MARKER):]   # RFC 3948 §2.2
        try:
            self.handler.datagram_received(data, self.local, remote)
        except Exception as error:  # noqa: BLE001 - one bad datagram must not stop the port
            log.error("handling a {size}-byte datagram from {remote} on {local} failed: "
                      "{error}", size=len(data), remote=_endpoint_text(remote),
                      local=_endpoint_text(self.local),
                      error=f"{type(error).__name__}: {error}")
            log.debug("{traceback}", traceback=traceback.format_exc())

    def write(self, data: bytes, remote: Address) -> None:
        """Send ``data`` as it is (no framing) to ``remote``; errors are logged."""
        try:
            self.transport.write(data, remote)
        except (OSError, ValueError, MessageLengthError) as error:
            # OSError: unreachable network, no route, ...; ValueError: Twisted's
            # InvalidAddressError; MessageLengthError: EMSGSIZE.
            log.error("cannot send {size} bytes from {local} to {remote}: {error}",
                      size=len(data), local=_endpoint_text(self.local),
                      remote=_endpoint_text(remote), error=error)


class _Port(udp.Port):
    """A Twisted UDP port whose IPv6 socket is IPV6_V6ONLY and which is prepared
    (``prepare``: the IPsec bypass) before bind."""

    prepare: SocketPreparer | None = None
    nat_t = False

    def createInternetSocket(self) -> socket.socket:
        skt = super().createInternetSocket()
        try:
            if self.addressFamily == socket.AF_INET6:
                skt.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.prepare is not None:
                self.prepare(skt, self.addressFamily, self.nat_t)
        except BaseException:
            skt.close()
            raise
        return skt


@implementer(ISender)
class UdpTransport:
    """Binds the IKE port and the NAT-T port on each listen address; sends from them.

    ``port`` and ``nat_t_port`` may be 0 (the kernel picks a free port, read back
    with :meth:`endpoint`); ``nat_t_port`` is None when NAT-T is disabled (``-T``).
    ``local_port`` (``-P``) is the port exchanges we initiate are sent from; when it
    differs from ``port`` it is bound on every address too (after the others), so
    the replies arrive. ``prepare_socket`` is applied to every socket before its
    bind (it needs a reactor providing ``IReactorFDSet``, as every real one does).
    """

    def __init__(self, reactor: IReactorUDP, handler: IDatagramHandler,
                 addresses: Iterable[str] = (), port: int = ISAKMP_PORT,
                 nat_t_port: int | None = NAT_T_PORT, *,
                 local_port: int | None = None,
                 prepare_socket: SocketPreparer | None = None) -> None:
        if nat_t_port is not None and nat_t_port == port and port != 0:
            raise ValueError(f"the IKE port and the NAT-T port must differ (both {port})")
        if local_port and nat_t_port is not None and local_port == nat_t_port:
            raise ValueError(f"the local port and the NAT-T port must differ "
                             f"(both {local_port})")
        self._reactor = reactor
        self._handler = handler
        self._prepare = prepare_socket
        self.port = port
        self.nat_t_port = nat_t_port
        self.local_port = local_port if local_port and local_port != port else None
        self._initial = [normalise_address(a) for a in addresses]
        # address -> [(listening port, protocol)]: the IKE port first, then NAT-T,
        # then -P's.
        self._bound: dict[str, list[tuple[IListeningPort, IkeDatagramProtocol]]] = {}
        self._by_local: dict[Address, IkeDatagramProtocol] = {}
        self._closing: list[defer.Deferred] = []

    # -- binding ------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        """The addresses currently bound, in binding order."""
        return list(self._bound)

    def endpoints(self) -> list[tuple[Address, bool]]:
        """Every bound (address, port) with whether it is a NAT-T port."""
        return [(proto.local, proto.nat_t) for proto in self._by_local.values()]

    def endpoint(self, address: str, nat_t: bool = False) -> Address | None:
        """The (address, real port) bound for ``address`` (its NAT-T port if asked)."""
        for _, proto in self._bound.get(normalise_address(address), []):
            if proto.nat_t == nat_t:
                return proto.local
        return None

    def is_nat_t(self, local: Address) -> bool:
        """Whether ``local`` is one of our NAT-T sockets."""
        proto = self._lookup(local)
        return proto is not None and proto.nat_t

    def start(self) -> None:
        """Bind every listen address; on a failure unbind them all and raise BindError."""
        try:
            for address in self._initial:
                self.add_address(address)
        except BindError:
            for address in list(self._bound):
                self._closing.append(self.remove_address(address))
            raise

    def _listen(self, address: str, port: int,
                protocol: IkeDatagramProtocol) -> IListeningPort:
        try:
            if IReactorFDSet.providedBy(self._reactor):
                listening = _Port(port, protocol, address, MAX_DATAGRAM, self._reactor)
                listening.prepare = self._prepare
                listening.nat_t = protocol.nat_t
                listening.startListening()
                return listening
            if self._prepare is not None:
                raise BindError(address, port, describe_bind_error(
                    address, port, OSError(errno.EOPNOTSUPP, "this reactor's UDP ports "
                                           "cannot be prepared before bind (IPsec bypass)"),
                    protocol.nat_t))
            # Another kind of reactor: its own UDP ports (no IPV6_V6ONLY guarantee).
            return self._reactor.listenUDP(port, protocol, interface=address,
                                           maxPacketSize=MAX_DATAGRAM)
        except CannotListenError as error:
            cause = error.socketError
            raise BindError(address, port, describe_bind_error(
                address, port, cause, protocol.nat_t)) from None
        except OSError as error:
            raise BindError(address, port, describe_bind_error(
                address, port, error, protocol.nat_t)) from None

    def add_address(self, address: str) -> None:
        """Bind the IKE port (and the NAT-T port) on ``address``; no-op if bound.

        Raises BindError, after undoing a half-done binding.
        """
        address = normalise_address(address)
        if address in self._bound:
            return
        ports = [(self.port, False)]
        if self.nat_t_port is not None:
            ports.append((self.nat_t_port, True))
        if self.local_port is not None:
            ports.append((self.local_port, False))      # -P, after the others
        bound: list[tuple[IListeningPort, IkeDatagramProtocol]] = []
        for number, nat_t in ports:
            protocol = IkeDatagramProtocol(self._handler, address, nat_t)
            try:
                listening = self._listen(address, number, protocol)
            except BindError:
                for earlier, _ in bound:
                    self._closing.append(defer.maybeDeferred(earlier.stopListening))
                raise
            bound.append((listening, protocol))
        self._bound[address] = bound
        for _, protocol in bound:
            self._by_local[protocol.local] = protocol
            log.info("listening on {local}{nat_t}", local=_endpoint_text(protocol.local),
                     nat_t=" (NAT-T)" if protocol.nat_t else "")

    def remove_address(self, address: str) -> defer.Deferred:
        """Close the sockets of ``address`` (a no-op if none); fires when closed."""
        address = normalise_address(address)
        bound = self._bound.pop(address, [])
        closing = []
        for listening, protocol in bound:
            self._by_local.pop(protocol.local, None)
            closing.append(defer.maybeDeferred(listening.stopListening))
            log.info("stopped listening on {local}", local=_endpoint_text(protocol.local))
        return defer.gatherResults(closing, consumeErrors=True).addCallback(lambda _: None)

    def update_addresses(self, addresses: Iterable[str]) -> defer.Deferred:
        """Bind new addresses and close the ones no longer listed (after a rescan).

        A new address that cannot be bound is logged and skipped, so one bad
        address does not keep the others from working.
        """
        wanted = [normalise_address(a) for a in addresses]
        closing = [self.remove_address(a) for a in list(self._bound) if a not in wanted]
        for address in wanted:
            try:
                self.add_address(address)
            except BindError as error:
                log.error("{error}", error=error)
        return defer.gatherResults(closing, consumeErrors=True).addCallback(lambda _: None)

    def stop(self) -> defer.Deferred:
        """Close every socket; fires when all are closed."""
        closing = [self.remove_address(a) for a in list(self._bound)]
        closing += self._closing
        self._closing = []
        return defer.gatherResults(closing, consumeErrors=True).addCallback(lambda _: None)

    # -- sending ------------------------------------------------------------

    def _lookup(self, local: Address) -> IkeDatagramProtocol | None:
        try:
            return self._by_local.get((normalise_address(local[0]), int(local[1])))
        except (ValueError, TypeError, IndexError):
            return None

    def _route(self, local: Address, remote: Address,
               what: str) -> tuple[IkeDatagramProtocol, Address] | None:
        protocol = self._lookup(local)
        if protocol is None:
            log.error("cannot send {what} to {remote}: no socket is bound to {local}",
                      what=what, remote=remote, local=local)
            return None
        try:
            host = normalise_address(remote[0])
            target = (host, int(remote[1]))
        except (ValueError, TypeError, IndexError):
            log.error("cannot send {what} to {remote}: not a numeric address and port",
                      what=what, remote=remote)
            return None
        if ipaddress.ip_address(host).version != ipaddress.ip_address(protocol.address).version:
            log.error("cannot send {what} from {local} to {remote}: address families differ",
                      what=what, local=_endpoint_text(protocol.local),
                      remote=_endpoint_text(target))
            return None
        return protocol, target

    def send(self, data: bytes, local: Address, remote: Address) -> None:
        route = self._route(local, remote, f"a {len(data)}-byte message")
        if route is None:
            return
        protocol, target = route
        if protocol.nat_t:
            data = NON_ESP_MARKER + data        # RFC 3948 §2.2
        protocol.write(data, target)

    def send_keepalive(self, local: Address, remote: Address) -> None:
        route = self._route(local, remote, "a NAT-keepalive")
        if route is None:
            return
        protocol, target = route
        if not protocol.nat_t:
            log.error("not sending a NAT-keepalive from {local}: it is not a NAT-T port",
                      local=_endpoint_text(protocol.local))
            return
        protocol.write(NAT_KEEPALIVE, target)   # RFC 3948 §2.3


def select_listen_addresses(listen_on: list[str] | None,
                            available: Iterable[tuple[int, str]],
                            families: Iterable[int] = (socket.AF_INET, socket.AF_INET6),
                            ) -> tuple[list[str], list[str]]:
    """Which addresses to bind, and warnings about ``Listen-on`` entries not used.

    ``listen_on`` is ``[General] Listen-on`` (None or empty when unset);
    ``available`` the (family, address) pairs of the up interfaces
    (:func:`isakmpd.kernel.addresses.interface_addresses`); ``families`` what
    ``-4``/``-6`` allow. Unset: every available address of an allowed family. Set:
    the listed addresses that are available, in the list's order (like isakmpd,
    absent addresses are not bound, but here each one gets a warning).
    """
    allowed = set(families)
    present = [address for family, address in available if family in allowed]
    if not listen_on:
        return present, []
    chosen: list[str] = []
    warnings: list[str] = []
    for entry in listen_on:
        try:
            address = normalise_address(entry)
        except ValueError:
            warnings.append(f"[General] Listen-on: {entry!r} is not a numeric IP address, "
                            "ignored")
            continue
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if family not in allowed:
            warnings.append(f"[General] Listen-on: {address} ignored, its address family is "
                            "disabled (-4/-6)")
        elif address not in present:
            warnings.append(f"[General] Listen-on: {address} is not an address of any up "
                            "interface, not bound")
        elif address not in chosen:
            chosen.append(address)
    return chosen, warnings
