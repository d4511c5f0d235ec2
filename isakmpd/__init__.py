"""isakmpd for Linux: OpenBSD's IKEv1 key management daemon, in Python on Twisted."""

__version__ = "0.1.0"
