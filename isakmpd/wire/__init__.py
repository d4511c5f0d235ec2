"""ISAKMP/IKEv1 wire format: bytes to payload objects and back. Pure: no I/O, no Twisted.

``constants`` names every number, ``attributes`` codes data attributes,
``payloads`` every payload body, ``message`` the header and payload chain,
``errors`` the one exception decoding raises, ``pcap`` capture-file records.
"""
