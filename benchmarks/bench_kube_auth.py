#!/usr/bin/env python3
"""Benchmark: what `serve --kube-auth` costs a scrape, against plain `serve` in the same run.

Builds N namespaces (prefix ``vqc``), each with a veth to one bridge (BridgeLab), starts two
`vethpeer serve` on 127.0.0.1 (ports 21200-21299): one plain, one with ``--kube-auth`` whose
reviews go to the stand-in API server (tests/lab/kube_api.py; no kube-apiserver can run here).
Measures the median of --repeat cached ``/metrics`` scrapes (as Prometheus asks: OpenMetrics,
gzip), each on a new connection:

* plain: no authentication (the baseline);
* kube-auth, cached: the same token again within the decision cache's 5 s (no review);
* kube-auth, decided: a new token each time (a TokenReview and a SubjectAccessReview through
  the ``kubernetes`` client, to a loopback stand-in: a lower bound for a real API server).

Needs root. ``python benchmarks/bench_kube_auth.py --size 200``. Target (issue 17): a scrape
with authentication from the cache < 30 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab.kube_api import User, api_server, kubeconfig_file  # noqa: E402
from tests.lab.serve_lab import BridgeLab, free_port, get, serve  # noqa: E402

PORTS = (21200, 21299)
TARGET = 0.030
HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def median_scrape(port: int, repeat: int, token: object = None) -> float:
    times = []
    for i in range(repeat):
        headers = dict(HEADERS)
        if token is not None:
            headers["Authorization"] = f"Bearer {token if isinstance(token, str) else f'tok-{i}'}"
        start = time.perf_counter()
        reply = get(port, "/metrics", headers)
        times.append(time.perf_counter() - start)
        assert reply.status == 200, reply.status
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="namespaces (default 200)")
    parser.add_argument("--repeat", type=int, default=50, help="scrapes per measurement (default 50)")
    args = parser.parse_args()
    with (
        api_server(port=free_port(*PORTS)) as api,
        kubeconfig_file(api.url, "vqc-agent", "vqc") as kubeconfig,
        BridgeLab(args.size, inside=False, prefix="vqc") as _lab,
    ):
        api.reviews.tokens["prom"] = User("prometheus")
        for i in range(args.repeat):
            api.reviews.tokens[f"tok-{i}"] = User("prometheus")
        api.reviews.grant("prometheus", "get /metrics")
        common = ("--no-kube", "--min-interval", "3600")
        auth = ("--kube-auth", "--kube-auth-kubeconfig", kubeconfig)
        with (
            serve(*common, port=free_port(*PORTS), timeout=120) as plain,
            serve(*auth, *common, port=free_port(*PORTS), timeout=120) as secured,
        ):
            get(plain.port, "/metrics", HEADERS)  # the walk's page rendered once, on both
            get(secured.port, "/metrics", {**HEADERS, "Authorization": "Bearer prom"})
            baseline = median_scrape(plain.port, args.repeat)
            cached = median_scrape(secured.port, args.repeat, "prom")
            decided = median_scrape(secured.port, args.repeat, object())
    print(f"namespaces: {args.size}, scrapes per figure: {args.repeat} (median, new connection each)")
    print(f"plain /metrics (cached walk):            {baseline * 1000:7.2f} ms   1.00x")
    print(f"--kube-auth, decision cached:            {cached * 1000:7.2f} ms   {cached / baseline:.2f}x")
    print(f"--kube-auth, two reviews (loopback API): {decided * 1000:7.2f} ms   {decided / baseline:.2f}x")
    met = cached < TARGET
    print(f"target: cached decision < {TARGET * 1000:.0f} ms: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
