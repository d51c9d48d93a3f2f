"""`vethpeer serve`: the engine behind a read-only HTTP server (Prometheus metrics + JSON API).

* :mod:`.cache` — one walk at a time, shared by every request (single flight), reused
  for ``--min-interval``, the last good result kept for when a walk overruns;
* :mod:`.metrics` — a ``prometheus_client`` collector turning a walk into series;
* :mod:`.api` — the routes: ``/metrics``, ``/api/v1/*``, ``/healthz``, ``/readyz``;
* :mod:`.http` — the stdlib HTTP server, hardened: bounded request line, headers and
  time per request, bounded handler threads, clean shutdown.
"""

DEFAULT_PORT = 10098  # see docs/cluster.md ("The port")
