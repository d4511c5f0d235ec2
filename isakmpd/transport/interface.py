"""The datagram seam between the UDP transport and the IKE engine.

Owns :class:`ISender` (what the engine calls to put an ISAKMP message on the wire;
provided by :class:`isakmpd.transport.udp.UdpTransport` and by in-memory senders in
the engine's tests) and :class:`IDatagramHandler` (what the transport calls with each
received ISAKMP message; provided by the engine's dispatcher).

Addresses are ``(numeric IP text, port)`` tuples; IPv6 text is in compressed form
without a scope (``"2001:db8::1"``), so the same peer always compares equal.
"""

from __future__ import annotations

import zope.interface

from isakmpd.kernel.interface import Address

__all__ = ["Address", "IDatagramHandler", "ISender"]


class ISender(zope.interface.Interface):
    """Sends ISAKMP messages and NAT-T keepalives from one of our bound addresses."""

    def send(data: bytes, local: Address, remote: Address) -> None:
        """Send an ISAKMP message from local to remote.

        If local's port is the NAT-T port (4500 or configured), the transport
        prepends the 4-byte non-ESP marker (RFC 3948 §2.2). Keepalives use
        send_keepalive. A datagram that cannot be sent (no socket bound to local, a
        network error) is logged, not raised: UDP is unreliable anyway and the
        exchange's retransmission timer covers the loss.
        """

    def send_keepalive(local: Address, remote: Address) -> None:
        """Send a NAT-keepalive, the single byte 0xFF (RFC 3948 §2.3), from a NAT-T port."""


class IDatagramHandler(zope.interface.Interface):
    """Receives ISAKMP messages (implemented by the engine's dispatcher)."""

    def datagram_received(data: bytes, local: Address, remote: Address) -> None:
        """One ISAKMP message (non-ESP marker already stripped, keepalives already
        dropped), the local address+port it arrived on, and the sender's
        address+port. Never raises."""
