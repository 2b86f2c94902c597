"""Decoding, validation and encoding of V2 (Open Inference Protocol) inference messages.

Pure functions over bytes, dicts and numpy arrays, shared by the fast REST route and
kserve's gRPC path. Every client mistake raises ``InvalidRequest`` (HTTP 400, gRPC
INVALID_ARGUMENT) with a message naming the field, the value and what was expected.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest
from kserve.utils.numpy_codec import from_np_dtype

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
# Header the binary tensor extension (tritonclient's default) adds; its bodies are not JSON.
BINARY_HEADER = "inference-header-content-length"
_MAX_SHOWN = 60  # characters of a client value quoted back in an error


class InvalidRequest(InvalidInput):
    """A client mistake in an inference request (HTTP 400)."""

    status: int = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(InvalidRequest):
    """A request body over the configured size limit (HTTP 413)."""

    status: int = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


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
        return len(self.feature_names)


@dataclass(frozen=True)
class DecodedRequest:
    x: np.ndarray  # float64, shape (batch, n_features), all finite
    outputs: tuple[str, ...]
    request_id: str | None = None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object with an 'inputs' list")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidRequest(
            f"request body is a JSON {type(request).__name__}; expected an object with an 'inputs' list"
        )
    return request


def decode_json_request(
    body: bytes, spec: InputSpec, available: Sequence[str], default: Sequence[str]
) -> DecodedRequest:
    """A REST V2 request body -> validated float64 features and the outputs asked for."""
    request = parse_json(body)
    tensor = _single_input(request.get("inputs"), spec)
    if not isinstance(tensor, dict):
        raise InvalidRequest(f"inputs[0] is {_show(tensor)}; expected a tensor object")
    datatype, shape = _check_header(tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), spec)
    array = _json_array(tensor.get("data"), body)
    x = _features(array, datatype, shape, spec)
    outputs = _requested_json_outputs(request.get("outputs"), available, default)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"id is {_show(request_id)}; expected a string")
    return DecodedRequest(x, outputs, request_id)


def decode_infer_request(
    request: InferRequest, spec: InputSpec, available: Sequence[str], default: Sequence[str]
) -> DecodedRequest:
    """kserve's decoded request (gRPC, or REST through kserve's own route) -> features."""
    tensor = _single_input(request.inputs, spec)
    datatype, shape = _check_header(tensor.name, tensor.datatype, tensor.shape, spec)
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"input '{spec.name}' data does not fit shape {shape}: {exc}") from None
    names = [out.name for out in request.request_outputs or ()]
    outputs = check_outputs(names, available, default)
    return DecodedRequest(_features(array, datatype, shape, spec), outputs, request.id or None)


def _single_input(inputs: Any, spec: InputSpec) -> Any:
    if inputs is None:
        raise InvalidRequest(f"'inputs' is missing; expected a list with one tensor named '{spec.name}'")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest(
            f"'inputs' is {_show(inputs)}; expected a list with one tensor named '{spec.name}'"
        )
    if len(inputs) != 1:
        raise InvalidRequest(f"'inputs' holds {len(inputs)} tensors; this model takes exactly one, '{spec.name}'")
    return inputs[0]


def _expected_shape(spec: InputSpec) -> str:
    return f"[batch, {spec.n_features}] with batch >= 1"


def _check_header(name: Any, datatype: Any, shape: Any, spec: InputSpec) -> tuple[str, tuple[int, int]]:
    if name != spec.name:
        raise InvalidRequest(f"inputs[0].name is {_show(name)}; expected '{spec.name}'")
    if datatype not in NUMERIC_DATATYPES:
        raise InvalidRequest(
            f"inputs[0].datatype is {_show(datatype)}; expected one of {', '.join(NUMERIC_DATATYPES)}"
        )
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    ):
        raise InvalidRequest(f"inputs[0].shape is {_show(shape)}; expected {_expected_shape(spec)}")
    rows, columns = shape
    if columns != spec.n_features:
        raise InvalidRequest(
            f"inputs[0].shape is {list(shape)}: {columns} features per row; "
            f"this model takes {spec.n_features} ({', '.join(spec.feature_names)})"
        )
    if rows < 1:
        raise InvalidRequest(f"inputs[0].shape is {list(shape)}; expected {_expected_shape(spec)}")
    return datatype, (rows, columns)


def _json_array(data: Any, body: bytes) -> np.ndarray:
    """JSON data (flat or nested lists) -> a numeric numpy array, refusing anything but numbers."""
    if not isinstance(data, list):
        raise InvalidRequest(f"inputs[0].data is {_show(data)}; expected a list of numbers (flat or nested)")
    try:
        array = np.array(data)
    except (ValueError, TypeError):
        raise InvalidRequest("inputs[0].data is ragged: nested lists of unequal length") from None
    # numpy turns JSON true/false into 1/0 when mixed with numbers; scanning every value is
    # only needed when the body holds such a literal at all, which a plain request never does.
    if array.dtype.kind not in "iuf" or ((b"true" in body or b"false" in body) and _has_bool(data)):
        raise InvalidRequest(
            f"inputs[0].data holds {_show(_first_non_number(data))}; expected only numbers "
            "(no strings, booleans, nulls or objects)"
        )
    return array


def _flatten(data: Any) -> Iterable[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _has_bool(data: list) -> bool:
    return any(isinstance(value, bool) for value in _flatten(data))


def _first_non_number(data: list) -> Any:
    for value in _flatten(data):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
    return data


def _features(array: np.ndarray, datatype: str, shape: tuple[int, int], spec: InputSpec) -> np.ndarray:
    """Numeric array in the declared datatype and shape -> finite float64 (batch, n_features)."""
    if array.size != shape[0] * shape[1]:
        raise InvalidRequest(
            f"inputs[0].shape {list(shape)} needs {shape[0] * shape[1]} values; data holds {array.size}"
        )
    dtype = NUMERIC_DATATYPES[datatype]
    if dtype.kind in "iu":
        if array.dtype.kind == "f":
            raise InvalidRequest(
                f"inputs[0].datatype is {datatype} but data holds non-integer numbers (or integers beyond 64 bits)"
            )
        limits = np.iinfo(dtype)
        if array.size and (array.min() < limits.min or array.max() > limits.max):
            raise InvalidRequest(
                f"inputs[0].data holds values outside {datatype} range [{limits.min}, {limits.max}]"
            )
    elif dtype != array.dtype:
        # Round to the declared precision first: the client said its numbers are FP32/FP16.
        with np.errstate(over="ignore"):
            array = array.astype(dtype)
    x = array.astype(np.float64, copy=False).reshape(shape)
    # One pass for NaN (compares false), Inf and values beyond what the model computes on.
    accepted = (x >= spec.low) & (x <= spec.high)
    if not accepted.all():
        _refuse_value(x, accepted, datatype, spec)
    return x


def _refuse_value(x: np.ndarray, accepted: np.ndarray, datatype: str, spec: InputSpec) -> None:
    row, column = np.argwhere(~accepted)[0]
    value, feature = x[row, column], spec.feature_names[column]
    where = f"inputs[0].data holds {value} at row {row}, feature '{feature}'"
    if not np.isfinite(value):
        raise InvalidRequest(f"{where} (NaN, Inf, or out of {datatype} range); expected finite numbers")
    raise InvalidRequest(
        f"{where}; this model takes '{feature}' in [{spec.low[column]:.7g}, {spec.high[column]:.7g}] "
        f"({spec.range_reason})"
    )


def _requested_json_outputs(outputs: Any, available: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    if outputs is None:
        return tuple(default)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidRequest(
            f"'outputs' is {_show(outputs)}; expected a list of objects like {{\"name\": \"predict\"}}"
        )
    return check_outputs([o.get("name") for o in outputs], available, default)


def check_outputs(names: Sequence[Any], available: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    if not names:
        return tuple(default)
    for name in names:
        if name not in available:
            raise InvalidRequest(f"outputs names {_show(name)}; this model offers {', '.join(available)}")
    return tuple(dict.fromkeys(names))


def datatype_of(values: np.ndarray) -> str:
    return _datatype(values.dtype)


@functools.lru_cache(maxsize=None)
def _datatype(dtype: np.dtype) -> str:
    # kserve's mapping is a chain of dtype comparisons; outputs come in a handful of dtypes.
    return from_np_dtype(dtype)


def output_tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    """One V2 output tensor; orjson writes float64 with exact round-trip."""
    if values.dtype.kind in "biuf":
        data: Any = np.ascontiguousarray(values).ravel()
    else:  # string class labels
        data = [str(v) for v in values.ravel()]
    return {"name": name, "datatype": datatype_of(values), "shape": list(values.shape), "data": data}


def encode_response(
    model_name: str, model_version: str | None, request_id: str | None, results: Mapping[str, np.ndarray]
) -> bytes:
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [output_tensor(name, values) for name, values in results.items()]
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
