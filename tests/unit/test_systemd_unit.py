"""deploy/systemd/vethpeer.service: checked by systemd's own `systemd-analyze verify` (offline: no
systemd needs to run as PID 1), scored by `systemd-analyze security --offline`, and held to the
hardening the docs promise."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.policy import need_binary
from vethpeer.journal import DEFAULT_PATH

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "vethpeer.service"
ANALYZE = "/usr/bin/systemd-analyze"


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this venv's vethpeer (verify checks the program exists)."""
    here = Path(sys.executable).parent / "vethpeer"
    copy = tmp_path / "vethpeer.service"
    copy.write_text((text or UNIT.read_text()).replace("/usr/local/bin/vethpeer", str(here)))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    need_binary(ANALYZE)
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    done = verify(installed_copy(tmp_path))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def test_the_check_catches_a_mistake(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt")
    done = verify(installed_copy(tmp_path, text))
    assert "ProtectSystem" in done.stderr or "protect system" in done.stderr


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    need_binary(ANALYZE)
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    score = re.search(r"Overall exposure level for vethpeer.service: ([\d.]+)", done.stdout)
    assert score, done.stdout + done.stderr
    assert float(score.group(1)) <= 3.5, done.stdout


def test_the_unit_writes_only_the_journal_and_listens_on_loopback() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == str(Path(DEFAULT_PATH).parent) == "/var/lib/vethpeer"
    assert service["CapabilityBoundingSet"].split() == ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
    assert service["NoNewPrivileges"] == "yes"
    assert f"--journal {DEFAULT_PATH}" in service["ExecStart"]
    assert "--listen 127.0.0.1:10098" in service["ExecStart"]


@pytest.mark.parametrize("key", ["ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables"])
def test_more_hardening(key: str) -> None:
    assert re.search(rf"^{key}=(yes|read-only)$", UNIT.read_text(), re.M)
