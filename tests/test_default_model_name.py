"""The default model name is written once (contract.files) and imported everywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

from contract.files import DEFAULT_MODEL_NAME

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "contract", "pipelines", "scoring", "serving", "bench")
HOME = ROOT / "contract" / "files.py"


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (usage examples may name the model)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled(path: Path) -> list[int]:
    """Lines of string literals (docstrings aside) that contain the default model name."""
    tree = ast.parse(path.read_text(), str(path))
    skip = docstrings(tree)
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and DEFAULT_MODEL_NAME in node.value]


def test_only_the_contract_spells_the_default_model_name():
    modules = [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]
    assert HOME in modules and len(modules) > 50, len(modules)
    assert spelled(HOME), "contract/files.py no longer defines DEFAULT_MODEL_NAME"
    others = {str(path.relative_to(ROOT)): lines for path in modules if path != HOME and (lines := spelled(path))}
    assert not others, f"spell {DEFAULT_MODEL_NAME!r} through contract.files.DEFAULT_MODEL_NAME: {others}"


def test_the_pipelines_and_clis_default_to_it():
    from components.deploy import DEFAULT_ISVC
    from pipelines.params import effective
    from pipelines.training_pipeline import PACKAGE_PATH

    values = effective({}, PACKAGE_PATH)
    assert values["model_name"] == values["deploy_isvc"] == DEFAULT_ISVC == DEFAULT_MODEL_NAME
