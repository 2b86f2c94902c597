"""The model file this project's server and batch scoring load: skops, which names types instead of running code.

A pickle (model.joblib) runs whatever its bytes say when it is loaded, so anyone who can write the
bucket can run code in the server; its sha256 in metadata.json only catches corruption, because
whoever writes the model can write the checksum too. A skops file is a zip of a JSON tree and
arrays: loading it builds only the types the tree names. Loading here refuses a file that names
any type outside TRUSTED_TYPES, which is derived from the estimators this project trains
(components.train.ESTIMATORS): `python -m components.modelformat --write` regenerates
contract/trusted_types.py, and a test fails when that file and the derivation disagree.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Iterator

from contract.trusted_types import TRUSTED_TYPES

_SHOWN = 8  # refused type names printed in one error


class UntrustedModel(ValueError):
    """The skops file is not loadable as a model this project trained: it names other types, or is not skops."""


def dumps(estimator: Any) -> bytes:
    """The estimator as skops bytes.

    Args:
        estimator: a fitted scikit-learn estimator or Pipeline.

    Returns:
        The skops file's bytes (model.skops).
    """
    import skops.io  # only steps that write or read a model pay for the import

    return skops.io.dumps(estimator)


def named_types(data: bytes) -> set[str]:
    """Every "module.name" (class, function or type) the skops file's schema names.

    Args:
        data: a skops file's bytes.

    Returns:
        The names; UntrustedModel when the bytes are not a skops file.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise UntrustedModel(f"not a skops file ({type(exc).__name__}: {exc})") from None
    return set(_names(schema))


def _names(node: Any) -> Iterator[str]:
    # Every node of a skops tree carries __class__ and __module__; children hang anywhere below it.
    if isinstance(node, dict):
        cls, module = node.get("__class__"), node.get("__module__")
        if cls is not None or module is not None:
            yield f"{module}.{cls}"
        for value in node.values():
            yield from _names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _names(value)


def loads(data: bytes, trusted: frozenset[str] = TRUSTED_TYPES) -> Any:
    """The estimator in a skops file; UntrustedModel when it names a type outside `trusted` or does not load.

    Args:
        data: a skops file's bytes.
        trusted: the type names it may contain (default: TRUSTED_TYPES).

    Returns:
        The estimator, its trees checked (check_trees).
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    names = named_types(data)
    refused = sorted(names - trusted)
    if refused:
        more = f" and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
        raise UntrustedModel(f"it names {len(refused)} type(s) outside the trusted list of the estimators this "
                             f"project trains: {', '.join(refused[:_SHOWN])}{more}")
    try:
        # Every name was checked above; skops audits again against its own defaults plus these.
        estimator = skops.io.loads(data, trusted=sorted(names))
    except UntrustedTypesFoundException as exc:
        raise UntrustedModel(f"skops refused it: {exc}") from None
    except Exception as exc:  # a tree of trusted types that still fails to build is malformed, not a model
        raise UntrustedModel(f"it does not load ({type(exc).__name__}: {exc})") from None
    check_trees(estimator)
    return estimator


def check_trees(estimator: Any) -> None:
    """Refuse decision trees whose node links or feature indices point outside their arrays.

    scikit-learn's tree code indexes those arrays without bounds checks (the reason skops does not
    trust sklearn.tree._tree.Tree by default): a crafted file of trusted types could crash the
    process at its first prediction. A fitted tree's children always come after their parent, so
    "child index > own index" also rules out cycles.

    Args:
        estimator: a loaded estimator; every object reachable from it is checked.
    """
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    def links_ok(left, right, leaf, feature, n_features: int, size: int) -> bool:
        index = np.arange(size)
        inner = ~leaf
        return bool(np.all((left[inner] > index[inner]) & (left[inner] < size)
                           & (right[inner] > index[inner]) & (right[inner] < size)
                           & (feature[inner] >= 0) & (feature[inner] < n_features)))

    # A tree's feature index must fit the input its estimator checks (n_features_in_), whatever the tree says.
    width: dict[int, int] = {}
    for owner in _objects(estimator):
        n_features = getattr(owner, "n_features_in_", None)
        if isinstance(n_features, int):
            for tree in [getattr(owner, "tree_", None), *_objects(getattr(owner, "_predictors", []))]:
                width[id(tree)] = n_features
    for found in _objects(estimator):
        if isinstance(found, Tree):
            size = found.node_count
            arrays = (found.children_left, found.children_right, found.feature)
            leaf = found.children_left == -1
            ok = all(len(a) == size for a in arrays) and size > 0 and bool(
                np.all(leaf == (found.children_right == -1))) and links_ok(
                    *arrays[:2], leaf, arrays[2], min(found.n_features, width.get(id(found), found.n_features)), size)
            ok = ok and found.value.shape[0] == size
        elif isinstance(found, TreePredictor):
            nodes = found.nodes
            leaf = nodes["is_leaf"].astype(bool)
            ok = len(nodes) > 0 and links_ok(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf,
                                             nodes["feature_idx"].astype(np.int64), width.get(id(found), 0),
                                             len(nodes))
            categorical = ~leaf & nodes["is_categorical"].astype(bool)
            ok = ok and bool(np.all(nodes["bitset_idx"][categorical] < len(found.raw_left_cat_bitsets)))
        else:
            continue
        if not ok:
            raise UntrustedModel(f"a {type(found).__name__} in it links nodes or features outside its arrays "
                                 "(a crafted or damaged tree)")


def _objects(root: Any) -> Iterator[Any]:
    """root and every object reachable through attributes, lists, tuples and dicts (each once)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        current = stack.pop()
        if id(current) in seen or isinstance(current, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, (list, tuple)):
            stack.extend(current)
        elif hasattr(current, "__dict__") and not isinstance(current, type):
            stack.extend(vars(current).values())
