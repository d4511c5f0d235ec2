"""ISAKMP/IKEv1 wire format: bytes to payload objects and back. Pure: no I/O, no Twisted."""
