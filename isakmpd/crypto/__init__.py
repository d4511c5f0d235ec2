"""IKEv1 cryptography: DH groups, ciphers, PRF, key material. Pure: no I/O, no Twisted."""
