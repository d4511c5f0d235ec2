"""isakmpd.conf(5): parser, transactional store, generated defaults, checks. Pure: no I/O."""
