"""What a model takes as input rows, and the checks on them, shared by the server and batch scoring.

Pure numpy, no kserve: ``serving.v2`` (the endpoints) and ``scoring`` (batch files, the library)
both call these, so a value the server refuses with a 400 is a rejected row in a batch, with
the same words. Failures raise ``RowCheckError``; each caller turns it into its own error type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.inputrange import input_range

INPUT_NAME = "input-0"
# V2 datatypes a float feature matrix can be built from; BOOL and BYTES are not numbers.
NUMERIC_DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in {
        "FP64": np.float64, "FP32": np.float32, "FP16": np.float16,
        "INT64": np.int64, "INT32": np.int32, "INT16": np.int16, "INT8": np.int8,
        "UINT64": np.uint64, "UINT32": np.uint32, "UINT16": np.uint16, "UINT8": np.uint8,
    }.items()
}
_DATATYPE_OF = {dtype: name for name, dtype in NUMERIC_DATATYPES.items()}


class RowCheckError(ValueError):
    """Input values the model does not take; the message names where, the value and what is expected."""


@dataclass(frozen=True, eq=False)
class InputSpec:
    """The one input tensor a tabular model takes: [batch, n_features] numbers.

    ``low``/``high``: per feature, the values the model computes on (default: any finite
    float64); ``range_reason`` says why they are narrower, for the error message.
    """

    feature_names: tuple[str, ...]
    name: str = INPUT_NAME
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    range_reason: str = ""

    def __post_init__(self) -> None:
        n, limit = len(self.feature_names), np.finfo(np.float64).max
        for field, default in (("low", -limit), ("high", limit)):
            value = getattr(self, field)
            bound = np.full(n, default) if value is None else np.asarray(value, np.float64)
            if bound.shape != (n,):
                raise ValueError(f"InputSpec.{field} has shape {bound.shape}; expected ({n},), one per feature")
            object.__setattr__(self, field, bound)

    @property
    def n_features(self) -> int:
        """Columns the model takes.

        Returns:
            The feature count.
        """
        return len(self.feature_names)


def input_spec(estimator: Any, feature_names: Sequence[str]) -> InputSpec:
    """The spec of a loaded model: its schema's features and the range its estimator computes on.

    Args:
        estimator: the loaded model.
        feature_names: its schema's features, in order.

    Returns:
        The InputSpec.
    """
    accepted = input_range(estimator, len(feature_names))
    return InputSpec(tuple(feature_names), low=accepted.low, high=accepted.high, range_reason=accepted.reason)


def datatype_of_dtype(dtype: np.dtype) -> str | None:
    """The V2 numeric datatype of a numpy dtype (any byte order), None when it is not a number type.

    Args:
        dtype: a numpy dtype.

    Returns:
        The datatype (INT64, FP32, ...), or None.
    """
    return _DATATYPE_OF.get(np.dtype(dtype).newbyteorder("="))


def as_float(array: np.ndarray, datatype: str, count: int, where: str) -> np.ndarray:
    """Numeric values in the declared datatype -> float64, refusing a count or range that does not fit.

    Args:
        array: the values as decoded.
        datatype: the tensor's declared datatype.
        count: the number of values the shape needs.
        where: the tensor's path in the request, for messages.

    Returns:
        The values as float64; RowCheckError for a wrong count or a value outside the datatype.
    """
    if array.size != count:
        raise RowCheckError(f"{where}.shape needs {count} values; data holds {array.size}")
    dtype = NUMERIC_DATATYPES[datatype]
    if dtype.kind in "iu":
        if array.dtype.kind == "f":
            raise RowCheckError(
                f"{where}.datatype is {datatype} but data holds non-integer numbers (or integers beyond 64 bits)"
            )
        limits = np.iinfo(dtype)
        if array.dtype != dtype and array.size and (array.min() < limits.min or array.max() > limits.max):
            raise RowCheckError(f"{where}.data holds values outside {datatype} range [{limits.min}, {limits.max}]")
    elif dtype != array.dtype:
        # Round to the declared precision first: the client said its numbers are FP32/FP16.
        with np.errstate(over="ignore"):
            array = array.astype(dtype)
    return array.astype(np.float64, copy=False).ravel()


def accepted_cells(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(rows, features) bool: finite and within what the model computes on. NaN compares false: refused.

    Args:
        x: (rows, features) float64.
        spec: the model's input spec.

    Returns:
        The mask.
    """
    return (x >= spec.low) & (x <= spec.high)


def value_problem(value: float, column: int, spec: InputSpec, datatype: str) -> str:
    """What is wrong with one refused value, after "holds <value> ...": the NaN policy, or the range.

    Args:
        value: the refused value.
        column: its feature's index.
        spec: the model's input spec.
        datatype: the tensor's datatype.

    Returns:
        The text, starting with "(" or ";".
    """
    if not np.isfinite(value):
        return f"(NaN, Inf, or out of {datatype} range); expected finite numbers"
    feature = spec.feature_names[column]
    return (f"; this model takes '{feature}' in [{spec.low[column]:.7g}, {spec.high[column]:.7g}] "
            f"({spec.range_reason})")


def check_range(x: np.ndarray, spec: InputSpec, wheres: Sequence[str], datatypes: Sequence[str]) -> None:
    """Raise RowCheckError naming the first refused value (row, feature), if any.

    Args:
        x: (rows, features) float64.
        spec: the model's input spec.
        wheres: per feature, its tensor's path in the request.
        datatypes: per feature, its tensor's datatype.
    """
    # One pass for NaN (compares false), Inf and values beyond what the model computes on.
    accepted = accepted_cells(x, spec)
    if accepted.all():
        return
    row, column = np.argwhere(~accepted)[0]
    value, feature = x[row, column], spec.feature_names[column]
    problem = value_problem(value, column, spec, datatypes[column])
    separator = "" if problem.startswith(";") else " "
    raise RowCheckError(f"{wheres[column]}.data holds {value} at row {row}, feature '{feature}'{separator}{problem}")
