"""Every input of every KFP component has a description in the compiled YAML (the Kubeflow UI shows it).

KFP takes the descriptions from the components' ``Args:`` docstrings. It writes none for
``Output[...]`` artifacts or a single return value, so only inputs and NamedTuple outputs are checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
PACKAGES = ("training_pipeline.yaml", "batch_scoring_pipeline.yaml")


def undescribed(package: str) -> dict[str, list[str]]:
    """component -> its inputs (and NamedTuple outputs) without a description; DAGs (conditions, loops) left out."""
    spec = next(yaml.safe_load_all((PIPELINES / package).read_text()))
    found = {}
    for name, component in spec["components"].items():
        if "executorLabel" not in component:  # a condition or loop: KFP-generated channels, no docstring
            continue
        missing = [f"input {kind} {key}" for kind, items in component.get("inputDefinitions", {}).items()
                   for key, item in items.items() if not item.get("description")]
        outputs = component.get("outputDefinitions", {}).get("parameters", {})
        if len(outputs) > 1:  # a NamedTuple: its fields come from Returns:
            missing += [f"output {key}" for key, item in outputs.items() if not item.get("description")]
        found[name] = missing
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_component_input_is_described(package):
    found = undescribed(package)
    assert found, f"no components found in {package}"
    assert {name: missing for name, missing in found.items() if missing} == {}
