"""The node agent's container image, built here without any image registry.

* The base: a Debian bookworm ``debootstrap --variant=minbase`` rootfs with python3 and
  python3-venv, from the Debian archive, imported with ``docker import`` as
  ``vethpeer-test/vps-agent-base:<hash>`` — the hash of everything that goes into it, so it is
  built once and reused (CI keeps it as long as its Docker keeps images).
* The image: the repository's own ``Dockerfile`` on that base (``--build-arg BASE=``), with
  the wheels of vethpeer and its dependencies built on the host (``pip wheel``) into the build
  context, so the build itself needs no network. Tagged ``vethpeer-test/vps-agent:<hash>``.

Usage: ``python -m tests.lab.agent_image`` prints the image name (building what is missing).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_REPO = "vethpeer-test/vps-agent-base"
IMAGE_REPO = "vethpeer-test/vps-agent"
RECIPE = 1  # bump when the way the base is made changes


def _run(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}: {done.stderr.strip()[-2000:]}")
    return str(done.stdout)


def image_exists(name: str) -> bool:
    return (
        subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0
    )


def base_hash() -> str:
    recipe = f"{RECIPE} {SUITE} {MIRROR} minbase {','.join(PACKAGES)}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_image() -> str:
    """The base image, from the cache or made now (debootstrap: a few minutes, once)."""
    name = f"{BASE_REPO}:{base_hash()}"
    if image_exists(name):
        return name
    work = Path(tempfile.mkdtemp(prefix="vps-rootfs-"))
    try:
        rootfs = work / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ]
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = work / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."])
        _run(["docker", "import", "--change", 'CMD ["/bin/bash"]', str(tar), name])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return name


def _inputs_hash(base: str, wheels: Path) -> str:
    """The base, the Dockerfile, vethpeer's sources and the dependencies' wheels (vethpeer's own
    wheel is not byte-reproducible: its zip timestamps change with every build)."""
    digest = hashlib.sha256(base.encode())
    sources = [ROOT / "Dockerfile", ROOT / "pyproject.toml", *sorted((ROOT / "vethpeer").rglob("*.py"))]
    dependencies = sorted(w for w in wheels.glob("*.whl") if not w.name.startswith("vethpeer-"))
    for path in [*sources, *dependencies]:
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def agent_image() -> str:
    """The agent image for the current source tree (rebuilt when vethpeer or a dependency changes)."""
    base = base_image()
    context = Path(tempfile.mkdtemp(prefix="vps-image-"))
    try:
        wheels = context / "wheels"
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(ROOT)])
        name = f"{IMAGE_REPO}:{_inputs_hash(base, wheels)}"
        if image_exists(name):
            return name
        shutil.copy(ROOT / "Dockerfile", context / "Dockerfile")
        _run(["docker", "build", "--pull=false", "--build-arg", f"BASE={base}", "-t", name, str(context)])
        _prune(keep=name)
        return name
    finally:
        shutil.rmtree(context, ignore_errors=True)


def _prune(keep: str) -> None:
    """Remove this helper's older agent images (one per source change otherwise piles up)."""
    listed = _run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO])
    for old in listed.split():
        if old != keep:
            subprocess.run(["docker", "rmi", old], capture_output=True, check=False)


if __name__ == "__main__":
    print(agent_image())
