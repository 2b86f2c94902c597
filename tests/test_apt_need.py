"""tools/apt-need.sh: what make test, helm and actionlint need from Debian, installed as root or named in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "apt-need.sh"


@pytest.fixture
def shims(tmp_path):
    """A PATH with stand-ins for id and apt-get (which logs its arguments and exits $APT_EXIT)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "id").write_text('#!/bin/sh\necho "${FAKE_UID:-0}"\n')
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "E: apt says why" >&2\n'
                                     'exit "${APT_EXIT:-0}"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)

    def run(*pairs: str, uid: int = 0, apt_exit: int = 0) -> tuple[int, str, list[str]]:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_UID": str(uid),
               "APT_EXIT": str(apt_exit)}
        done = subprocess.run(["bash", str(SCRIPT), *pairs], capture_output=True, text=True, env=env, timeout=30)
        return done.returncode, done.stdout + done.stderr, calls.read_text().splitlines() if calls.exists() else []

    return run


def test_nothing_missing_is_silent(shims):
    assert shims("bash:bash", "sh:dash") == (0, "", [])


def test_not_root_names_the_missing_packages_in_one_line(shims):
    code, out, calls = shims("bash:bash", "no-such-tool-1:pkg-one", "no-such-tool-2:pkg-two", uid=1000)
    assert code == 1 and calls == []
    assert out == ("missing Debian package(s) pkg-one pkg-two and not root: "
                   "run 'sudo apt-get install -y pkg-one pkg-two'\n")


def test_root_installs_only_the_missing_ones_quietly(shims):
    code, out, calls = shims("bash:bash", "no-such-tool:pkg-one")
    assert code == 0
    assert out == "==> apt-get install pkg-one\n"  # apt's own output is kept out of sight
    assert calls == ["update -qq", "install -y -qq pkg-one"]


def test_a_failed_install_says_so_with_apts_reason(shims):
    code, out, _ = shims("no-such-tool:pkg-one", apt_exit=100)
    assert code == 1
    assert "apt-get install pkg-one failed:" in out and "E: apt says why" in out
