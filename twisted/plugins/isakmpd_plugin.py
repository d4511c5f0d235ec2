"""twistd plugin: makes ``twistd isakmpd`` available. The service itself is built in isakmpd.tap."""

from twisted.application.service import ServiceMaker

isakmpd = ServiceMaker(
    "isakmpd",
    "isakmpd.tap",
    "IKEv1 key management daemon (OpenBSD isakmpd(8) for Linux)",
    "isakmpd",
)
