"""helm lint --strict refuses what helm template refuses, and the happy path prints no warnings.

helm lint renders with `fail` turned into an [INFO] line, so the chart's cross-field rules
(skm.refuse in _helpers.tpl) also end the render another way that lint counts as an error.
The chart carries copies of the MinIO component's files, not symlinks: helm warns
"found symbolic link in path" on every command for each one.
"""

from __future__ import annotations

import filecmp

import pytest

from . import render
from .test_chart_values import BAD_VALUES
from .tools import CHART, MANIFESTS, CommandFailed, run

# The chart's copy -> the kustomize component's file it must equal (the one to edit).
SHARED_FILES = {
    CHART / "files" / name: MANIFESTS / "components" / "minio" / name
    for name in ("setup-bucket.sh", "reader-policy.json", "writer-policy.json")
}
# What helm lint --strict prints on success, besides the chart's name and the summary.
LINT_INFO_OK = {"[INFO] Chart.yaml: icon is recommended"}


def test_chart_holds_no_symlinks():
    links = [path for path in CHART.rglob("*") if path.is_symlink()]
    assert links == [], f"helm warns on every command about {links}: copy the files instead"


@pytest.mark.parametrize("copy", sorted(SHARED_FILES), ids=lambda path: path.name)
def test_chart_copies_equal_the_kustomize_files(copy):
    source = SHARED_FILES[copy]
    assert source.is_file() and copy.is_file()
    assert filecmp.cmp(copy, source, shallow=False), (
        f"{copy.relative_to(CHART.parent.parent)} differs from {source.relative_to(MANIFESTS.parent)}: "
        f"edit the manifests one, then cp it over the chart's copy"
    )


def test_template_prints_no_warnings(helm):
    argv = [helm, "template", render.RELEASE, str(CHART), *render.helm_args((), render.NAMESPACE, True)]
    assert run(argv, with_stderr=True) == run(argv), "helm template wrote to stderr on the happy path"


@pytest.mark.parametrize("mode", render.CHART_MODES, ids=lambda mode: mode.name)
def test_lint_prints_nothing_but_its_summary(helm, mode):
    output = render.helm_lint(helm, mode.values, namespace=mode.release_namespace)
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[0] == f"==> Linting {CHART}" and lines[-1] == "1 chart(s) linted, 0 chart(s) failed", output
    assert set(lines[1:-1]) <= LINT_INFO_OK, output


# helm lint 3.18 ignores `--set KEY=null` (it keeps the chart's default), so there it lints the
# default credentials: nothing for the chart to refuse. Checked below, so the day helm changes shows.
LINT_IGNORES_NULL = (("objectStore.accessKey=null",),)
LINTED_BAD_VALUES = [(values, field) for values, field in BAD_VALUES if values not in LINT_IGNORES_NULL]


@pytest.mark.parametrize(("values", "field"), LINTED_BAD_VALUES, ids=[" ".join(v) for v, _ in LINTED_BAD_VALUES])
def test_lint_refuses_what_template_refuses(helm, values, field):
    with pytest.raises(CommandFailed) as failure:
        render.helm_lint(helm, values)
    assert "1 chart(s) failed" in failure.value.output
    assert field in failure.value.output


@pytest.mark.parametrize("values", LINT_IGNORES_NULL, ids=" ".join)
def test_lint_keeps_the_default_of_a_nulled_value(helm, values):
    assert values in [v for v, _ in BAD_VALUES]  # template refuses it (test_chart_values)
    assert "0 chart(s) failed" in render.helm_lint(helm, values)
    with pytest.raises(CommandFailed) as failure:  # the CHANGE-ME default is still there
        render.helm_lint(helm, values, allow_placeholders=False)
    assert "CHANGE-ME placeholder credentials in objectStore.accessKey" in failure.value.output


def test_lint_refuses_placeholder_credentials_by_default(helm):
    with pytest.raises(CommandFailed) as failure:
        render.helm_lint(helm, (), allow_placeholders=False)
    assert "CHANGE-ME placeholder credentials in objectStore.accessKey, objectStore.secretKey" in failure.value.output
