"""The kernel layer: the IKernel seam and its providers.

``interface`` defines IKernel, KernelSA, KernelFlow and KernelError; ``memory`` is the
in-memory provider (``-n`` and tests); ``addresses`` enumerates local interface
addresses over netlink. Importing this package does not import pyroute2; only
``addresses`` (and the XFRM provider, later) do.
"""

from isakmpd.kernel.interface import Address, IKernel, KernelError, KernelFlow, KernelSA
from isakmpd.kernel.memory import MemoryKernel

__all__ = ["Address", "IKernel", "KernelError", "KernelFlow", "KernelSA", "MemoryKernel"]
