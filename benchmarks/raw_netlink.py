#!/usr/bin/env python3
"""The raw-netlink reference: what `vethpeer table --json` does, in plain Python, nothing else.

No vethpeer import, no sources, no classes: the namespaces from ``/proc/self/mountinfo``
(nsfs bind mounts) and the host's; for each a setns(), a NETLINK_ROUTE socket made
inside, one link dump and one address dump through it; RTM_GETNSID asked by the host's
socket for each namespace (after the dumps, as vethpeer does); then the join (each
namespace's veths to their host-side peers by (nsid, ifindex)) printed as JSON rows.

``bench_core.py`` times it beside ``vethpeer table --json`` in the same run (issue 18:
at most 1.3x this). Needs root. ``python benchmarks/raw_netlink.py`` prints the rows.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
NLMSG = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")
IFADDR = struct.Struct("=BBBBI")
NLA = struct.Struct("=HH")
U32 = struct.Struct("=I")
S32 = struct.Struct("=i")
DUMP = 0x1 | 0x300
RTM_GETLINK, RTM_NEWLINK, RTM_GETADDR, RTM_NEWADDR, RTM_GETNSID, RTM_NEWNSID = 18, 16, 22, 20, 90, 88
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_OPERSTATE = 1, 3, 4, 5, 10, 16
IFLA_LINKINFO, IFLA_LINK_NETNSID, IFLA_INFO_KIND = 18, 37, 1
libc = ctypes.CDLL(None, use_errno=True)


def attrs(data, pos, end):
    while pos + 4 <= end:
        length, kind = NLA.unpack_from(data, pos)
        if length < 4:
            return
        yield kind & 0x3FFF, pos + 4, pos + length
        pos += (length + 3) & ~3


def request(sock, seq, msg_type, flags, payload):
    sock.send(NLMSG.pack(NLMSG.size + len(payload), msg_type, flags, seq, 0) + payload)
    while True:
        data = sock.recv(1 << 17)
        pos = 0
        while pos + NLMSG.size <= len(data):
            length, rtype, _f, _s, _p = NLMSG.unpack_from(data, pos)
            body, end = pos + NLMSG.size, pos + length
            pos += (length + 3) & ~3
            if rtype in (2, 3):  # NLMSG_ERROR, NLMSG_DONE
                return
            yield rtype, data, body, end
        if not flags & 0x300:
            return


def links(sock):
    found = []
    payload = IFINFO.pack(0, 0, 0, 0, 0) + NLA.pack(8, 29) + U32.pack(1 << 3)
    for rtype, data, body, end in request(sock, 1, RTM_GETLINK, DUMP, payload):
        if rtype != RTM_NEWLINK:
            continue
        index = IFINFO.unpack_from(data, body)[2]
        link = {"index": index, "addresses": []}
        for attr, start, stop in attrs(data, body + IFINFO.size, end):
            if attr == IFLA_IFNAME:
                link["name"] = data[start : stop - 1].decode()
            elif attr == IFLA_ADDRESS:
                link["mac"] = data[start:stop].hex(":")
            elif attr in (IFLA_MTU, IFLA_MASTER):
                link["mtu" if attr == IFLA_MTU else "master"] = U32.unpack_from(data, start)[0]
            elif attr == IFLA_LINK:
                link["link"] = S32.unpack_from(data, start)[0]
            elif attr == IFLA_OPERSTATE:
                link["operstate"] = data[start]
            elif attr == IFLA_LINK_NETNSID:
                link["netnsid"] = S32.unpack_from(data, start)[0]
            elif attr == IFLA_LINKINFO:
                for info, istart, istop in attrs(data, start, stop):
                    if info == IFLA_INFO_KIND:
                        link["kind"] = data[istart : istop - 1].decode()
        if "netnsid" in link:
            link.setdefault("link", index)
        found.append(link)
    return found


def addresses(sock, by_index):
    for rtype, data, body, end in request(sock, 2, RTM_GETADDR, DUMP, IFADDR.pack(0, 0, 0, 0, 0)):
        if rtype != RTM_NEWADDR:
            continue
        family, prefix, _flags, _scope, index = IFADDR.unpack_from(data, body)
        raw = None
        for attr, start, stop in attrs(data, body + IFADDR.size, end):
            if attr in (1, 2):  # IFA_ADDRESS, IFA_LOCAL (the latter wins)
                raw = data[start:stop] if raw is None or attr == 2 else raw
        if raw is not None and index in by_index:
            by_index[index]["addresses"].append(f"{socket.inet_ntop(family, raw)}/{prefix}")


def nsid_of(sock, fd):
    payload = struct.pack("=Bxxx", 0) + NLA.pack(8, 3) + U32.pack(fd)
    for rtype, data, body, end in request(sock, 3, RTM_GETNSID, 1, payload):
        if rtype == RTM_NEWNSID:
            for attr, start, _stop in attrs(data, body + 4, end):
                if attr == 1:
                    return S32.unpack_from(data, start)[0]
    return None


def namespaces():
    paths = ["/proc/self/ns/net"]  # we run in the host namespace (PID 1 may refuse even root)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split(" ")
            if fields[3].startswith("net:[") and " - nsfs " in line and fields[4] not in paths:
                paths.append(fields[4])
    return paths


def main():
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    read = {}  # inode -> (fd, socket, links by index)
    for path in namespaces():
        fd = os.open(path, os.O_RDONLY)
        inode = os.fstat(fd).st_ino
        if inode in read:
            os.close(fd)
            continue
        libc.setns(fd, CLONE_NEWNET)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        libc.setns(home, CLONE_NEWNET)
        by_index = {link["index"]: link for link in links(sock)}
        addresses(sock, by_index)
        read[inode] = (fd, sock, by_index)
    host = os.stat("/proc/self/ns/net").st_ino
    host_sock, host_links = read[host][1], read[host][2]
    by_nsid = {nsid_of(host_sock, fd): inode for inode, (fd, _s, _l) in read.items() if inode != host}
    host_peers = {(by_nsid.get(link.get("netnsid")), link.get("link")): link for link in host_links.values()}
    rows = []
    for inode, (_fd, _sock, by_index) in read.items():
        if inode == host:
            continue
        for link in by_index.values():
            if link.get("kind") == "veth":
                peer = host_peers.get((inode, link["index"]))
                master = host_links.get(peer.get("master")) if peer else None
                rows.append({"netns": inode, "link": link, "peer": peer, "bridge": master and master["name"]})
    json.dump({"interfaces": rows}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
