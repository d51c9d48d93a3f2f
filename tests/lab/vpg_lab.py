"""tests/lab/netlab.py's Lab with the graph tests' own prefix (vpg) for every name it makes."""

from __future__ import annotations

from tests.lab.netlab import Lab

PREFIX = "vpg"


class GraphLab(Lab):
    """Namespaces ``vpg-<tag>-*``, links ``vpg<tag>*``, bridges ``vpgbr<tag>*``."""

    prefix = PREFIX
