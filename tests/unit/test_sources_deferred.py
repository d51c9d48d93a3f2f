"""all_sources(): a deferred source answers as its own module would, importing it only when needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vethpeer.model import NsKey
from vethpeer.sources import Context, Deferred, Options, Paths, absent, all_sources, podman


def test_each_deferred_source_loads_the_source_it_names() -> None:
    deferred = [s for s in all_sources() if isinstance(s, Deferred)]
    assert [s.name for s in deferred] == ["docker", "podman", "lxc", "kube"]
    for source in deferred:
        loaded = source.load()
        assert loaded.name == source.name
        assert source.load() is loaded  # imported and made once


def test_a_source_with_nothing_to_read_answers_as_its_module_and_is_not_imported(tmp_path: Path) -> None:
    """A /proc with no process, no kubeconfig: the deferred answers equal the modules' own,
    and a fresh interpreter asking docker, lxc and kube imports none of their modules."""
    (tmp_path / "proc").mkdir()
    context = Context(
        NsKey(1, 1),
        (),
        Options(docker_host=str(tmp_path / "docker.sock")),
        proc=str(tmp_path / "proc"),
        environ={"HOME": str(tmp_path)},
        paths=Paths(in_cluster_token=str(tmp_path / "token"), docker_run_dir=str(tmp_path / "run-docker")),
    )
    for source in (s for s in all_sources() if isinstance(s, Deferred)):
        assert source.collect(context) == source.load().collect(context)
    for source in (s for s in all_sources() if s.name in ("docker", "lxc", "kube")):
        assert source.collect(context).status.state.value == "skipped"
    roots = (str(tmp_path),)  # this machine may have Podman's own state
    assert absent.podman(context, roots) == podman.PodmanNames(roots).collect(context)
    assert absent.podman(context, roots) is not None
    assert absent.kube(Context(NsKey(1, 1), (), Options(kube=False))) is not None  # --no-kube
    code = """
import sys
from vethpeer.model import NsKey
from vethpeer.sources import Context, Options, Paths, all_sources
tmp = sys.argv[1]
context = Context(
    NsKey(1, 1), (), Options(docker_host=tmp + "/docker.sock"), proc=tmp + "/proc", environ={"HOME": tmp},
    paths=Paths(in_cluster_token=tmp + "/token", docker_run_dir=tmp + "/run-docker"),
)
for source in all_sources():
    if source.name in ("docker", "lxc", "kube"):
        source.collect(context)
print(sorted(m for m in sys.modules if m.removeprefix("vethpeer.sources.") in ("docker", "lxc", "kube")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
