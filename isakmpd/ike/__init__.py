"""IKEv1 negotiation: exchanges, SA database, policy from configuration, IDs, NAT-T."""
