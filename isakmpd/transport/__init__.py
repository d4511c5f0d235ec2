"""The transport layer: UDP sockets for IKE (port 500) and NAT-T (port 4500).

``interface`` defines the ISender / IDatagramHandler seam with the engine; ``udp``
binds the sockets, applies the RFC 3948 framing and sends.
"""

from isakmpd.transport.interface import Address, IDatagramHandler, ISender

__all__ = ["Address", "IDatagramHandler", "ISender"]
