"""The JSON contract of issue #2 (`schema_version: 1`): fields that must always be there."""

TOP_FIELDS = frozenset({"schema_version", "vethpeer_version", "generated_at", "sources", "interfaces"})
INTERFACE_FIELDS = frozenset(
    {
        "workload",
        "netns",
        "ifname",
        "ifindex",
        "kind",
        "mac",
        "mtu",
        "state",
        "addresses",
        "master",
        "peer",
        "unresolved_peer",
    }
)
PEER_FIELDS = frozenset({"relation", "netns", "ifname", "ifindex", "mac", "master", "workload"})
WORKLOAD_FIELDS = frozenset({"kind", "name", "id"})
NETNS_FIELDS = frozenset({"inode", "names"})
