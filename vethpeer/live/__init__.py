"""The live views' engine, shared by `top`, `watch`, `doctor --sample` (and `serve`).

* :mod:`.rates` — pure: two counter samples -> per-interface rates, in the workload's
  point of view (resets, interfaces that come and go, namespaces that die mid-sample);
* :mod:`.walker` — a repeatable walk that keeps namespace fds and netlink sockets open
  between rounds and re-runs the sources' naming only when the namespaces change;
* :mod:`.events` — the host's netlink event socket (every namespace with an nsid);
* :mod:`.changes` — pure: two reports -> the events a person wants to read;
* :mod:`.carry` — pure: what a round keeps from the last (names, rows).
"""
