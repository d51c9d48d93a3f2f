"""`kubectl vethpeer`: ask the vethpeer node agents (deploy/kubernetes/) through the API server.

The plugin finds a pod's node through the API, the agent pod on that node (the DaemonSet's
pods, by label), and asks the agent's HTTP API through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/...``): no exec rights, no temporary pods.
A node whose agent is missing or silent is a status line, not a failure of the whole answer.

* :mod:`.cluster` — the API server: kubeconfig/context (the ``kubernetes`` client's loader), GETs;
* :mod:`.fanout` — which agent serves which node, and asking many at once under a deadline;
* :mod:`.render` — the merged table (NODE column), findings, per-node status lines;
* :mod:`.cli` — the ``kubectl-vethpeer`` entry point.
"""
