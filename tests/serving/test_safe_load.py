"""No code from the bucket: the server loads model.skops with the trusted types, never model.joblib."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io
from kserve.errors import ModelNotReady
from sklearn.linear_model import LinearRegression

from contract import modelformat
from serving.artifact import ArtifactError, load_artifact
from serving.model import SklearnModel


class _TouchOnUnpickle:
    """A pickle payload that runs code when loaded: it leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _edit_metadata(folder: Path, **changes) -> None:
    path = folder / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _replace_skops(folder: Path, data: bytes) -> None:
    """model.skops replaced by whoever can write the bucket, checksum included."""
    (folder / "model.skops").write_bytes(data)
    _edit_metadata(folder, skops_sha256=hashlib.sha256(data).hexdigest())


def _code_running_skops(marker: Path) -> bytes:
    """A skops file whose tree calls os.system("touch <marker>") when constructed."""
    schema = {"__class__": "system", "__module__": "os", "__loader__": "ConstructorFromReduceNode",
              "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                          "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                                       "content": json.dumps(f"touch {marker}"), "is_json": True}]},
              "protocol": 2, "_skops_version": skops.__version__}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path, regressor_dir: Path) -> Path:
    return Path(shutil.copytree(regressor_dir, tmp_path / "model"))


def test_a_code_running_pickle_with_a_valid_checksum_is_never_unpickled(folder, tmp_path, regressor, diabetes):
    marker = tmp_path / "pickle-ran"
    with (folder / "model.joblib").open("wb") as handle:
        pickle.dump(_TouchOnUnpickle(marker), handle)
    _edit_metadata(folder, sha256=hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest())
    artifact = load_artifact(folder)  # the stock runtime's file is not what this server loads
    assert not marker.exists(), "model.joblib was unpickled: code from the bucket ran in the server"
    x = diabetes[0][:5]
    np.testing.assert_array_equal(artifact.estimator.predict(x), regressor.predict(x))


def test_the_crafted_skops_file_really_runs_code_when_trusted(tmp_path):
    """The payload of the next test is real: skops told to trust os.system runs it."""
    marker = tmp_path / "skops-ran"
    skops.io.loads(_code_running_skops(marker), trusted=["os.system"])
    assert marker.exists()


def test_a_code_running_skops_file_is_refused_never_ready_and_logged(folder, tmp_path, diabetes, caplog):
    marker = tmp_path / "skops-ran"
    _replace_skops(folder, _code_running_skops(marker))
    model = SklearnModel("diabetes-rf", folder)
    with caplog.at_level(logging.ERROR):
        assert model.load() is False
    model.start()
    assert not marker.exists(), "the skops file's payload ran"
    assert model.ready is False
    assert "outside the trusted list" in model.load_error and "os.system" in model.load_error
    assert "os.system" in caplog.text and "stays not ready" in caplog.text
    with pytest.raises(ModelNotReady, match="os.system"):  # the reason the 503 carries
        model._require_ready()


def test_a_skops_file_of_a_type_this_project_never_trains_is_refused(folder, diabetes):
    """skops itself trusts every scikit-learn estimator; this server trusts only what the pipeline trains."""
    x, y, _ = diabetes
    _replace_skops(folder, skops.io.dumps(LinearRegression().fit(x, y)))
    with pytest.raises(ArtifactError, match="sklearn.linear_model._base.LinearRegression"):
        load_artifact(folder)


@pytest.mark.parametrize("data, expected", [
    (b"PK\x03\x04 not really a zip", "not a skops file"),
    (b"", "not a skops file"),
])
def test_a_skops_file_that_is_not_one_is_refused(folder, data, expected):
    _replace_skops(folder, data)
    with pytest.raises(ArtifactError, match=expected):
        load_artifact(folder)


def test_a_replaced_skops_file_without_its_checksum_is_refused(folder, diabetes):
    x, y, _ = diabetes
    (folder / "model.skops").write_bytes(modelformat.dumps(LinearRegression().fit(x, y)))
    with pytest.raises(ArtifactError, match="sha256 of model.skops is [0-9a-f]{64}; metadata.json says"):
        load_artifact(folder)


def test_a_version_pushed_before_skops_is_refused_naming_the_fix(folder):
    (folder / "model.skops").unlink()
    metadata = json.loads((folder / "metadata.json").read_text())
    for key in ("skops_file", "skops_sha256"):
        metadata.pop(key)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError) as caught:
        load_artifact(folder)
    message = str(caught.value)
    assert "has no model.skops" in message and "never unpickles model.joblib" in message
    assert "make run" in message and "make models" in message


def test_metadata_naming_a_skops_file_that_is_missing_is_refused(folder):
    (folder / "model.skops").unlink()
    with pytest.raises(ArtifactError, match="model.skops is missing"):
        load_artifact(folder)


def _with_tree_nodes_edited(data: bytes, edit) -> bytes:
    """The skops file with edit(nodes) applied to the first decision tree's node array."""
    import numpy as np

    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    edited = False
    with zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            raw = source.read(name)
            if name.endswith(".npy") and not edited:
                array = np.load(io.BytesIO(raw), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    array = array.copy()
                    edit(array)
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    raw, edited = buffer.getvalue(), True
            out.writestr(name, raw)
    assert edited, "no tree node array found"
    return target.getvalue()


@pytest.mark.parametrize("edit", [
    pytest.param(lambda nodes: nodes["left_child"].__setitem__(0, 10 ** 6), id="child-beyond-the-array"),
    pytest.param(lambda nodes: nodes["right_child"].__setitem__(0, 0), id="cycle-to-the-root"),
    pytest.param(lambda nodes: nodes["feature"].__setitem__(0, 10 ** 6), id="feature-beyond-the-input"),
])
def test_a_crafted_tree_of_trusted_types_is_refused_before_it_can_crash_a_prediction(folder, edit):
    data = (folder / "model.skops").read_bytes()
    _replace_skops(folder, _with_tree_nodes_edited(data, edit))
    with pytest.raises(ArtifactError, match="Tree in it links nodes or features outside its arrays"):
        load_artifact(folder)
