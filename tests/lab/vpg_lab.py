"""tests/lab/netlab.py's Lab with the graph tests' own prefix (vpg) for every name it makes."""

from __future__ import annotations

from tests.lab.netlab import Lab

PREFIX = "vpg"


class GraphLab(Lab):
    """Namespaces ``vpg-<tag>-*``, links ``vpg<tag>*``, bridges ``vpgbr<tag>*``."""

    def link_name(self, stem: str) -> str:
        name = f"{PREFIX}{self.tag}{stem}"
        if len(name) > 15:
            raise ValueError(f"interface name too long: {name}")
        return name

    def bridge_name(self, stem: str = "0") -> str:
        name = f"{PREFIX}br{self.tag}{stem}"
        if len(name) > 15:
            raise ValueError(f"bridge name too long: {name}")
        return name

    def ns_name(self, stem: str) -> str:
        return f"{PREFIX}-{self.tag}-{stem}"
