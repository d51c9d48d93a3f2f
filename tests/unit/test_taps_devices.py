"""tun_devices() over a sysfs-like directory: each device looked at once, a device made anew (a new
entry, another inode) looked at again."""

from __future__ import annotations

import shutil
from pathlib import Path

from vethpeer.sources.taps import tun_devices


def device(sys_net: Path, name: str, tun: bool) -> None:
    (sys_net / name).mkdir()
    if tun:
        (sys_net / name / "tun_flags").write_text("0x1002\n")


def test_a_device_made_anew_under_the_same_name_is_looked_at_again(tmp_path: Path) -> None:
    sys_net = tmp_path / "net"
    sys_net.mkdir()
    device(sys_net, "tap0", True)
    device(sys_net, "veth1", False)
    assert tun_devices(str(sys_net)) == ["tap0"]
    (sys_net / "tap0" / "tun_flags").unlink()  # (sysfs never does this: looked at once)
    assert tun_devices(str(sys_net)) == ["tap0"]
    # the two made anew, each another inode (made while the old ones are there: a file system
    # may reuse a freed inode, which kernfs does not), under the old names
    device(sys_net, "new-veth1", True)
    device(sys_net, "new-tap0", False)
    for name in ("veth1", "tap0"):
        shutil.rmtree(sys_net / name)
        (sys_net / f"new-{name}").rename(sys_net / name)
    assert tun_devices(str(sys_net)) == ["veth1"]
    assert tun_devices(str(tmp_path / "absent")) == []
