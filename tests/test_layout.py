"""The import rule of the layout: the server and the pipeline share only the contract package.

serving/ imports nothing from components/, pipelines/, scoring/ (or bench/, tools/, tests/): the
server image would otherwise carry pipeline code, and a change to a step could change what the
server accepts. contract/ imports no project package but itself, so both sides can import it.
Every import is read with ast, also those inside functions.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"bench", "components", "contract", "pipelines", "scoring", "serving", "tests", "tools"}
ALLOWED = {"serving": {"serving", "contract"}, "contract": {"contract"}}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import stays inside its own package, which the rule allows.
            if node.level == 0 and node.module:
                found.append((node.lineno, node.module))
    return found


def forbidden_imports(package: str, root: Path = REPO_ROOT) -> list[str]:
    """'file:line imports module' for each import of a project package that ``package`` may not use."""
    files = sorted((root / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    wrong = []
    for path in files:
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top in PROJECT_PACKAGES and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(root)}:{line} imports {module}")
    return wrong


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_layout_allows(package):
    assert forbidden_imports(package) == [], f"{package}/ may import only {sorted(ALLOWED[package])} of the project"


def test_the_rule_sees_imports_inside_functions(tmp_path):
    # The checker itself: a lazy import of pipeline code inside a function is caught, a relative one is not.
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "bad.py").write_text(
        "from . import sibling\nimport json\n\ndef late():\n    from components.push import run\n    import pipelines.local\n")
    assert forbidden_imports("serving", tmp_path) == ["serving/bad.py:5 imports components.push",
                                            "serving/bad.py:6 imports pipelines.local"]


STEPS = ("components.evaluate", "components.ingest", "components.push", "components.selection", "components.train")


@pytest.mark.parametrize("module", STEPS)
def test_step_run_takes_keyword_arguments_only(module):
    # evaluate.run had 12 positional parameters: a swapped pair (seed, test_fraction) passed silently.
    parameters = inspect.signature(importlib.import_module(module).run).parameters.values()
    assert parameters, f"{module}.run takes no parameters"
    assert [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY] == []
