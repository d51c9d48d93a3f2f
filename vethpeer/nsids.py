"""Turning each namespace's IFLA_LINK_NETNSID values into namespace identities: a pure function.

An nsid means something only in the namespace that reported it. ``resolve`` finds
what each one means, asking the kernel through ``ask(observer, target)`` — "which
nsid does ``observer`` give ``target``?" (RTM_GETNSID, which never allocates one) —
as few times as it can:

1. every namespace asks what nsid it gives the host: that resolves every pod and
   container whose peer is in the host;
2. veth pairs are symmetric: once a pod end's peer is *verified* to be host link L,
   L's own nsid must mean the pod's namespace — derived, not guessed, and only
   accepted when L points back at the pod end;
3. whatever is left (peers between two non-host namespaces, macvlan parents in
   another namespace) is verified against the candidates the pairs suggest, and at
   worst against every namespace.
An nsid that none of this resolves stays unresolved; the correlator reports it.

A caller that resolves again and again (the live model) passes what it found before
(``known``) and the namespaces whose links changed since (``todo``): an nsid keeps its
meaning while both namespaces live, so only the new ones are looked for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from .model import Link, NsKey

PAIR_KINDS = ("veth", "netkit")

Ask = Callable[[NsKey, NsKey], "int | None"]
Resolved = dict[NsKey, dict[int, NsKey]]


def _wanted(links: Sequence[Link], known: Mapping[int, NsKey]) -> set[int]:
    return {link.link_netnsid for link in links if link.link_netnsid is not None} - known.keys()


def _ask(resolved: Resolved, ask: Ask, observer: NsKey, target: NsKey) -> None:
    nsid = ask(observer, target)
    if nsid is not None:
        resolved[observer].setdefault(nsid, target)


def _derive_from_pairs(
    links: Mapping[NsKey, Sequence[Link]],
    resolved: Resolved,
    informers: Collection[NsKey],
    confirm: Ask | None = None,
) -> bool:
    """Step 2: a verified pair end (in one of ``informers``) tells the other end what its nsid means.

    ``confirm``: each answer derived is taken only if the kernel gives the same (an answer that is
    kept for long must not rest on two reads of a moment that a move came between)."""
    index: dict[NsKey, dict[int, Link]] = {}
    learned = False
    for key in informers:
        for link in links[key]:
            if link.kind not in PAIR_KINDS or link.link is None:
                continue
            where = key if link.link_netnsid is None else resolved[key].get(link.link_netnsid)
            if where is None or where not in informers:  # the others are resolved already
                continue
            if where not in index:
                index[where] = {found.index: found for found in links[where]}
            other = index[where].get(link.link)
            if (
                other is None
                or other.link != link.index
                or other.link_netnsid is None
                or other.link_netnsid in resolved[where]
                or (confirm is not None and confirm(where, key) != other.link_netnsid)
            ):
                continue
            resolved[where][other.link_netnsid] = key
            learned = True
    return learned


def _verify_candidates(
    links: Mapping[NsKey, Sequence[Link]], resolved: Resolved, ask: Ask, keys: Collection[NsKey]
) -> None:
    """Step 3: ask about the namespaces the links suggest, then about all (for ``keys``)."""
    left = [key for key in keys if _wanted(links[key], resolved[key])]
    if not left:
        return
    by_index: dict[int, list[tuple[NsKey, Link]]] = {}
    for key, found in links.items():
        for link in found:
            if link.link is not None and link.link_netnsid is not None:
                by_index.setdefault(link.index, []).append((key, link))
    for key in left:
        found = links[key]
        for link in found:
            if link.link_netnsid is None or link.link_netnsid in resolved[key] or link.link is None:
                continue
            for other_key, other in by_index.get(link.link, ()):
                if other_key != key and other.link == link.index:
                    _ask(resolved, ask, key, other_key)
        wanted = _wanted(found, resolved[key])
        if wanted:  # parents of macvlans, odd topologies: one exhaustive pass
            # (sets kept up to date here: recomputing them per candidate is quadratic at 1000 namespaces)
            known = set(resolved[key].values())
            for other_key in links:
                if other_key == key or other_key in known:
                    continue
                nsid = ask(key, other_key)
                if nsid is not None and nsid not in resolved[key]:
                    resolved[key][nsid] = other_key
                    known.add(other_key)
                    wanted.discard(nsid)
                    if not wanted:
                        break


def resolve(
    links: Mapping[NsKey, Sequence[Link]],
    host: NsKey | None,
    ask: Ask,
    known: Resolved | None = None,
    todo: Collection[NsKey] | None = None,
    *,
    confirm: bool = False,
) -> Resolved:
    """For each namespace of ``links``, the nsids its links use, mapped to the namespaces they mean.

    ``known``, ``todo``: an earlier answer, and the namespaces of ``links`` to look at again (new,
    links changed, or an nsid left unresolved); the others keep ``known``'s answer, unread. The
    caller keeps in ``known`` only namespaces that lived since (``links``' keys): then every nsid
    the links use means what a fresh ``resolve(links, host, ask)`` finds. Dicts of ``known`` are
    never changed (a namespace looked at again gets a copy).

    ``confirm``: every answer is the kernel's (step 2's derivations are asked about too): what the
    live model keeps between looks. Two links read a moment apart can point at each other by
    accident (a pair end moved in between to another namespace, where it kept its ifindex); a
    fresh resolution is wrong for one look then, a remembered one would stay wrong."""
    if known is None or todo is None:
        todo = links.keys()
        resolved: Resolved = {key: {} for key in links}
    else:
        resolved = {key: dict(known.get(key, {})) if key in todo else known[key] for key in links}
    if host is not None and host in links:
        for key in todo:
            if key != host and _wanted(links[key], resolved[key]):
                _ask(resolved, ask, key, host)
    while _derive_from_pairs(links, resolved, todo, ask if confirm else None):
        pass
    _verify_candidates(links, resolved, ask, todo)
    return resolved


def unmatched(links: Mapping[NsKey, Sequence[Link]], resolved: Resolved) -> dict[NsKey, set[int]]:
    """Peers to read again: for each namespace, the ifindexes that a pair end elsewhere points at
    but that its last read did not have, or had pointing elsewhere.

    Namespaces are read one after another, so a pair made (or moved) in between is seen from
    one side only: a new pod's eth0, read after the host, names a host end the host's read
    came too early for. Read again, that end is there (an answer, not "gone"); still missing,
    it is really gone. Pairs within one namespace were read at once and are never unmatched.
    """
    stale: dict[NsKey, set[int]] = {}
    indexes: dict[NsKey, dict[int, Link]] = {}
    for key, found in links.items():
        for link in found:
            if link.kind not in PAIR_KINDS or link.link_netnsid is None or link.link is None:
                continue
            target = resolved[key].get(link.link_netnsid)
            if target is None or target not in links:
                continue
            if target not in indexes:
                indexes[target] = {other.index: other for other in links[target]}
            other = indexes[target].get(link.link)
            if (
                other is None
                or other.link != link.index
                # the other end still points where this one was before a move
                or (
                    other.link_netnsid is not None
                    and resolved[target].get(other.link_netnsid) not in (key, None)
                )
            ):
                stale.setdefault(target, set()).add(link.link)
    return stale


def unresolved(
    links: Mapping[NsKey, Sequence[Link]], resolved: Resolved, keys: Collection[NsKey]
) -> set[NsKey]:
    """Those of ``keys`` with an nsid that ``resolved`` does not say the meaning of."""
    return {key for key in keys if _wanted(links[key], resolved[key])}
