"""vethpeer: which host-side veth belongs to this container or pod, and who owns vethXXXX."""

__version__ = "0.1.0"
