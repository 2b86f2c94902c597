"""Decoding, validation and encoding of V2 (Open Inference Protocol) inference messages.

Pure functions over bytes, dicts and numpy arrays, shared by the fast REST route and
kserve's gRPC path. Every client mistake raises ``InvalidRequest`` (HTTP 400, gRPC
INVALID_ARGUMENT) with a message naming the field, the value and what was expected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NamedTuple

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest
from kserve.utils.numpy_codec import from_np_dtype

from serving import rows
from serving.rows import INPUT_NAME, NUMERIC_DATATYPES, InputSpec  # noqa: F401 (re-exported: serving.v2.InputSpec)

# The binary tensor extension (tritonclient's and kserve's client default): the body is a JSON
# header of this many bytes, then the tensors' raw bytes in input order.
BINARY_HEADER = "inference-header-content-length"
PANDAS = "pd"  # content_type of KServe's pandas codec: one input per feature column
# Where each V2 datatype travels in gRPC typed contents (FP16 and BF16 only as raw bytes).
GRPC_CONTENTS = {
    "FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents", "INT32": "int_contents",
    "INT16": "int_contents", "INT8": "int_contents", "UINT64": "uint64_contents", "UINT32": "uint_contents",
    "UINT16": "uint_contents", "UINT8": "uint_contents", "BOOL": "bool_contents", "BYTES": "bytes_contents",
}
_LITTLE = {name: dtype.newbyteorder("<") for name, dtype in NUMERIC_DATATYPES.items()}
_MAX_SHOWN = 60  # characters of a client value quoted back in an error


class InvalidRequest(InvalidInput):
    """A client mistake in an inference request (HTTP 400)."""

    status: int = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(InvalidRequest):
    """A request body over the configured size limit (HTTP 413)."""

    status: int = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@dataclass(frozen=True)
class DecodedRequest:
    x: np.ndarray  # float64, shape (batch, n_features), all finite
    outputs: tuple[str, ...]
    request_id: str | None = None
    binary: frozenset[str] = frozenset()  # outputs to answer as raw bytes (binary tensor extension)


class _Input(NamedTuple):  # a tuple: built per request, on the hot path
    """One input tensor's header, and how to get its values once the header checks out."""

    where: str  # "inputs[0]": how error messages name it
    name: Any
    datatype: Any
    shape: Any
    values: Callable[[str, int], np.ndarray]  # (datatype, element count) -> flat array; may raise


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def error_body(message: str) -> bytes:
    """The JSON body of every error answer: ``{"error": message}``.

    Args:
        message: what went wrong, for the client.

    Returns:
        The body.
    """
    return orjson.dumps({"error": message})


def parse_json(body: bytes, what: str = "an 'inputs' list") -> dict[str, Any]:
    """A request body as a JSON object; InvalidRequest when it is empty, malformed or not an object.

    Args:
        body: the raw body.
        what: what the object should hold, for the message.

    Returns:
        The parsed object.
    """
    if not body:
        raise InvalidRequest(f"request body is empty; expected a JSON object with {what}")
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InvalidRequest(f"request body is a JSON {type(request).__name__}; expected an object with {what}")
    return request


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """A body and its Inference-Header-Content-Length -> (JSON header, binary tensor data, not copied).

    Args:
        body: the raw body.
        header_length: the Inference-Header-Content-Length header (None: all JSON).

    Returns:
        (JSON header, binary data as a memoryview, empty without the header); InvalidRequest for a non-numeric or
        too large length.
    """
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit():
        raise InvalidRequest(
            f"Inference-Header-Content-Length is {_show(header_length)}; expected the JSON header's size in bytes"
        )
    size = int(header_length)
    if size > len(body):
        raise InvalidRequest(f"Inference-Header-Content-Length is {size} but the body has only {len(body)} bytes")
    return body[:size], memoryview(body)[size:]


def decode_json_request(
    body: bytes, spec: InputSpec, available: Sequence[str], default: Sequence[str],
    header_length: str | None = None,
) -> DecodedRequest:
    """A REST V2 request body (JSON, or JSON + binary tensors) -> validated features and outputs.

    Args:
        body: the raw body.
        spec: the model's input spec (feature count, names, accepted range).
        available: the outputs the model offers.
        default: the outputs answered when the request names none.
        header_length: the Inference-Header-Content-Length header (None: all JSON).

    Returns:
        The DecodedRequest (float64 rows, outputs); InvalidRequest naming the field, value and what was expected.
    """
    header, binary = split_binary(body, header_length)
    request = parse_json(header)
    tensors = _input_list(request.get("inputs"), spec)
    inputs, tensor_parameters, offset = [], [], 0
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise InvalidRequest(f"inputs[{i}] is {_show(tensor)}; expected a tensor object")
        where = f"inputs[{i}]"
        tensor_parameters.append(_parameters(tensor, where))
        size = tensor_parameters[-1].get("binary_data_size")
        if size is None:
            values = functools.partial(_json_values, tensor.get("data"), header, where)
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidRequest(f"{where}.parameters.binary_data_size is {_show(size)}; expected a byte count")
            if "data" in tensor:
                raise InvalidRequest(f"{where} has both 'data' and parameters.binary_data_size; send one")
            if offset + size > len(binary):
                raise InvalidRequest(
                    f"{where}.parameters.binary_data_size is {size} but only {len(binary) - offset} bytes of binary "
                    f"data follow the JSON header (Inference-Header-Content-Length {len(header)})"
                )
            values = functools.partial(_raw_values, binary[offset:offset + size], where)
            offset += size
        inputs.append(_Input(where, tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), values))
    if offset != len(binary):
        raise InvalidRequest(
            f"{len(binary)} bytes of binary data follow the JSON header; the inputs' binary_data_size add up to {offset}"
        )
    request_parameters = _parameters(request, "request")
    x = _features(inputs, spec, _is_pandas(request_parameters, tensor_parameters))
    outputs, binary_outputs = _requested_json_outputs(request, request_parameters, available, default)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest(f"id is {_show(request_id)}; expected a string")
    return DecodedRequest(x, outputs, request_id, binary_outputs)


def decode_v1_request(body: bytes, spec: InputSpec) -> np.ndarray:
    """A V1 ``:predict`` body, {"instances": [...]}: rows as lists, or as objects keyed by feature name.

    Args:
        body: the raw body.
        spec: the model's input spec (feature count, names, accepted range).

    Returns:
        (rows, n_features) float64; InvalidRequest as for V2.
    """
    request = parse_json(body, "an 'instances' list")
    instances = request.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest(
            f"'instances' is {_show(instances)}; expected a non-empty list of rows "
            f"(lists of {spec.n_features} numbers, or objects keyed by {', '.join(spec.feature_names)})"
        )
    if all(isinstance(row, dict) for row in instances):
        rows = []
        for i, row in enumerate(instances):
            missing = [n for n in spec.feature_names if n not in row]
            unknown = [n for n in row if n not in spec.feature_names]
            if missing or unknown:
                raise InvalidRequest(
                    f"instances[{i}] keys do not match the model's features; missing: {', '.join(missing) or 'none'}; "
                    f"unknown: {', '.join(map(_show, unknown)) or 'none'}"
                )
            rows.append([row[n] for n in spec.feature_names])
        instances = rows
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != spec.n_features:
            raise InvalidRequest(
                f"instances[{i}] is {_show(row)}; expected a list of {spec.n_features} numbers "
                f"or an object keyed by {', '.join(spec.feature_names)}"
            )
    count = len(instances) * spec.n_features
    array = _json_values(instances, body, "instances", "FP64", count)
    x = _as_float(array, "FP64", count, "instances").reshape(len(instances), spec.n_features)
    _check_range(x, spec, ["instances"] * spec.n_features, ["FP64"] * spec.n_features)
    return x


def _parameters(obj: dict, where: str) -> dict:
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"{where}.parameters is {_show(parameters)}; expected an object")
    return parameters


def _is_pandas(request_parameters: Mapping, tensor_parameters: Sequence[Mapping]) -> bool:
    """KServe's pandas codec: content_type "pd" on the request or any input, or several inputs."""
    return len(tensor_parameters) > 1 or any(
        parameters.get("content_type") == PANDAS for parameters in (request_parameters, *tensor_parameters)
    )


def decode_grpc_request(
    request: Any, spec: InputSpec, available: Sequence[str], default: Sequence[str]
) -> DecodedRequest:
    """A gRPC ModelInferRequest (protobuf) -> features; raw contents are read in place with numpy.

    Args:
        request: the ModelInferRequest.
        spec: the model's input spec (feature count, names, accepted range).
        available: the outputs the model offers.
        default: the outputs answered when the request names none.

    Returns:
        The DecodedRequest (float64 rows, outputs); InvalidRequest naming the field, value and what was expected.
    """
    tensors = list(request.inputs)
    raw = request.raw_input_contents
    if raw and len(raw) != len(tensors):
        raise InvalidRequest(
            f"raw_input_contents holds {len(raw)} entries for {len(tensors)} inputs; expected one per input"
        )
    _input_list(tensors, spec)
    inputs = []
    for i, tensor in enumerate(tensors):
        where = f"inputs[{i}]"
        if raw:
            if tensor.HasField("contents"):
                raise InvalidRequest(f"{where} has contents and raw_input_contents; send one")
            values = functools.partial(_raw_values, raw[i], where)
        else:
            values = functools.partial(_typed_values, tensor.contents, where)
        inputs.append(_Input(where, tensor.name, tensor.datatype, list(tensor.shape), values))
    x = _features(inputs, spec, _is_pandas(_grpc_parameters(request), [_grpc_parameters(t) for t in tensors]))
    names = [out.name for out in request.outputs]
    return DecodedRequest(x, check_outputs(names, available, default), request.id or None)


def _grpc_parameters(message: Any) -> dict[str, Any]:
    return {key: value.string_param for key, value in message.parameters.items()}


def decode_infer_request(
    request: InferRequest, spec: InputSpec, available: Sequence[str], default: Sequence[str]
) -> DecodedRequest:
    """kserve's decoded request (REST through kserve's own route, fast route off) -> features.

    Args:
        request: kserve's InferRequest.
        spec: the model's input spec (feature count, names, accepted range).
        available: the outputs the model offers.
        default: the outputs answered when the request names none.

    Returns:
        The DecodedRequest (float64 rows, outputs); InvalidRequest naming the field, value and what was expected.
    """
    tensors = _input_list(request.inputs, spec)
    inputs = [
        _Input(f"inputs[{i}]", t.name, t.datatype, t.shape, functools.partial(_kserve_values, t, f"inputs[{i}]"))
        for i, t in enumerate(tensors)
    ]
    x = _features(inputs, spec, _is_pandas(request.parameters or {}, [t.parameters or {} for t in tensors]))
    names = [out.name for out in request.request_outputs or ()]
    return DecodedRequest(x, check_outputs(names, available, default), request.id or None)


def _input_list(inputs: Any, spec: InputSpec) -> Sequence[Any]:
    expected = f"expected a list with one tensor of shape {_expected_shape(spec)}, or one per feature"
    if inputs is None:
        raise InvalidRequest(f"'inputs' is missing; {expected}")
    if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)) or not inputs:
        raise InvalidRequest(f"'inputs' is {_show(inputs)}; {expected}")
    return inputs


def _expected_shape(spec: InputSpec) -> str:
    return f"[batch, {spec.n_features}] with batch >= 1"


def _check_datatype(tensor: _Input) -> str:
    if tensor.datatype not in NUMERIC_DATATYPES:
        raise InvalidRequest(
            f"{tensor.where}.datatype is {_show(tensor.datatype)}; expected one of {', '.join(NUMERIC_DATATYPES)}"
        )
    return tensor.datatype


def _int_shape(shape: Any) -> bool:
    return isinstance(shape, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)


def _features(inputs: Sequence[_Input], spec: InputSpec, pandas: bool) -> np.ndarray:
    """Input tensors -> finite float64 (batch, n_features) in the model's feature order."""
    if pandas:
        return _columns(inputs, spec)
    (tensor,) = inputs
    datatype = _check_datatype(tensor)
    shape = tensor.shape
    if not _int_shape(shape) or len(shape) != 2:
        raise InvalidRequest(f"{tensor.where}.shape is {_show(shape)}; expected {_expected_shape(spec)}")
    rows, columns = shape
    if columns != spec.n_features:
        raise InvalidRequest(
            f"{tensor.where}.shape is {list(shape)}: {columns} features per row; "
            f"this model takes {spec.n_features} ({', '.join(spec.feature_names)})"
        )
    if rows < 1:
        raise InvalidRequest(f"{tensor.where}.shape is {list(shape)}; expected {_expected_shape(spec)}")
    count = rows * columns
    x = _as_float(tensor.values(datatype, count), datatype, count, tensor.where).reshape(rows, columns)
    _check_range(x, spec, [tensor.where] * columns, [datatype] * columns)
    return x


def _columns(inputs: Sequence[_Input], spec: InputSpec) -> np.ndarray:
    """The pandas codec: one [batch] or [batch, 1] input per feature, by name, in any order."""
    names = [t.name for t in inputs]
    column_of = {name: i for i, name in enumerate(spec.feature_names)}
    unknown = [n for n in names if n not in column_of]
    missing = [n for n in spec.feature_names if n not in names]
    repeated = sorted({n for n in names if names.count(n) > 1}, key=str)
    if unknown or missing or repeated:
        problems = [f"{label}: {', '.join(map(_show, items))}" for label, items in
                    (("missing features", missing), ("unknown inputs", unknown), ("repeated inputs", repeated)) if items]
        raise InvalidRequest(
            f"pandas-style inputs (one per feature) do not match the model's features; {'; '.join(problems)}; "
            f"this model takes {', '.join(spec.feature_names)}"
        )
    batch = None
    x = None
    wheres, datatypes = [""] * spec.n_features, [""] * spec.n_features
    for tensor in inputs:
        datatype = _check_datatype(tensor)
        shape = tensor.shape
        if not _int_shape(shape) or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 1:
            raise InvalidRequest(f"{tensor.where}.shape is {_show(shape)}; expected [batch] or [batch, 1], batch >= 1")
        if batch is None:
            batch, x = shape[0], np.empty((shape[0], spec.n_features))
        elif shape[0] != batch:
            raise InvalidRequest(
                f"{tensor.where} ('{tensor.name}') has {shape[0]} rows; {inputs[0].where} has {batch}: "
                "every feature needs the same number of rows"
            )
        column = column_of[tensor.name]
        x[:, column] = _as_float(tensor.values(datatype, batch), datatype, batch, tensor.where)
        wheres[column], datatypes[column] = tensor.where, datatype
    _check_range(x, spec, wheres, datatypes)
    return x


def _json_values(data: Any, body: bytes, where: str, datatype: str, count: int) -> np.ndarray:
    """JSON data (flat or nested lists) -> a numeric numpy array, refusing anything but numbers."""
    if not isinstance(data, list):
        raise InvalidRequest(f"{where}.data is {_show(data)}; expected a list of numbers (flat or nested)")
    try:
        array = np.array(data)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{where}.data is ragged: nested lists of unequal length") from None
    if datatype == "UINT64" and array.dtype.kind == "f":
        array = _uint64_values(data, array)
    # numpy turns JSON true/false into 1/0 when mixed with numbers; scanning every value is
    # only needed when the body holds such a literal at all, which a plain request never does.
    if array.dtype.kind not in "iuf" or ((b"true" in body or b"false" in body) and _has_bool(data)):
        raise InvalidRequest(
            f"{where}.data holds {_show(_first_non_number(data))}; expected only numbers "
            "(no strings, booleans, nulls or objects)"
        )
    return array


def _uint64_values(data: list, array: np.ndarray) -> np.ndarray:
    """numpy reads integers >= 2**63 next to smaller ones as float64 (int64 cannot hold them): as uint64, exactly."""
    if not all(type(value) is int for value in _flatten(data)):
        return array  # a real non-integer: refused as such by the datatype check
    try:
        return np.array(data, np.uint64)
    except OverflowError:  # a negative value: refused by the range check on the float copy
        return array


def _raw_values(raw: bytes | memoryview, where: str, datatype: str, count: int) -> np.ndarray:
    """Little-endian tensor bytes -> a numpy view on them (no copy)."""
    dtype = _LITTLE[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(
            f"{where} has {len(raw)} bytes of data; its shape and datatype {datatype} need "
            f"{count} x {dtype.itemsize} = {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype)


def _typed_values(contents: Any, where: str, datatype: str, count: int) -> np.ndarray:
    field = GRPC_CONTENTS.get(datatype)
    if field is None:
        raise InvalidRequest(f"{where}.datatype {datatype} travels only as raw_input_contents")
    # numpy reads uint64 values >= 2**63 next to smaller ones as float64 unless told the type. Other
    # contents are read as numpy sees them (exact: protobuf holds them as int32/int64/float32/float64),
    # so that a value beyond a narrower declared type is refused by the range check, not overflowed here.
    return np.array(getattr(contents, field), np.uint64 if datatype == "UINT64" else None)


def _kserve_values(tensor: Any, where: str, datatype: str, count: int) -> np.ndarray:
    try:
        return np.asarray(tensor.as_numpy()).ravel()
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"{where} data does not fit its shape: {exc}") from None


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


def _as_float(array: np.ndarray, datatype: str, count: int, where: str) -> np.ndarray:
    """serving.rows.as_float, its refusal as a 400."""
    try:
        return rows.as_float(array, datatype, count, where)
    except rows.RowCheckError as exc:
        raise InvalidRequest(str(exc)) from None


def _check_range(x: np.ndarray, spec: InputSpec, wheres: Sequence[str], datatypes: Sequence[str]) -> None:
    """serving.rows.check_range (the same check batch scoring runs), its refusal as a 400."""
    try:
        rows.check_range(x, spec, wheres, datatypes)
    except rows.RowCheckError as exc:
        raise InvalidRequest(str(exc)) from None


def _requested_json_outputs(
    request: dict, parameters: Mapping, available: Sequence[str], default: Sequence[str]
) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for, and which of them to answer in binary (parameters: the request's)."""
    outputs = request.get("outputs")
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise InvalidRequest(f"parameters.binary_data_output is {_show(all_binary)}; expected true or false")
    if outputs is None:
        names = tuple(default)
        return names, frozenset(names if all_binary else ())
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidRequest(
            f"'outputs' is {_show(outputs)}; expected a list of objects like {{\"name\": \"predict\"}}"
        )
    names = check_outputs([o.get("name") for o in outputs], available, default)
    binary = set()
    for i, out in enumerate(outputs):
        flag = _parameters(out, f"outputs[{i}]").get("binary_data", all_binary)
        if not isinstance(flag, bool):
            raise InvalidRequest(f"outputs[{i}].parameters.binary_data is {_show(flag)}; expected true or false")
        if flag:
            binary.add(out["name"])
    return names, frozenset(binary)


def check_outputs(names: Sequence[Any], available: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    """The outputs a request asks for, checked against what the model offers.

    Args:
        names: the requested output names (empty: the default).
        available: the outputs the model offers.
        default: the outputs answered when the request names none.

    Returns:
        The names, duplicates dropped, in request order; InvalidRequest for a name the model does not offer.
    """
    if not names:
        return tuple(default)
    for name in names:
        if name not in available:
            raise InvalidRequest(f"outputs names {_show(name)}; this model offers {', '.join(available)}")
    return tuple(dict.fromkeys(names))


def datatype_of(values: np.ndarray) -> str:
    """The V2 datatype of an output array (FP64, INT64, BYTES, ...).

    Args:
        values: the output values.

    Returns:
        The datatype name.
    """
    return _datatype(values.dtype)


@functools.lru_cache(maxsize=None)
def _datatype(dtype: np.dtype) -> str:
    # kserve's mapping is a chain of dtype comparisons; outputs come in a handful of dtypes.
    return from_np_dtype(dtype)


def raw_bytes(values: np.ndarray) -> bytes:
    """A tensor as the binary extension and gRPC raw contents carry it: little-endian, BYTES length-prefixed.

    Args:
        values: the output values.

    Returns:
        The bytes.
    """
    if values.dtype.kind in "biuf":
        return np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in values.ravel():
        encoded = str(value).encode()
        parts += (len(encoded).to_bytes(4, "little"), encoded)
    return b"".join(parts)


def output_tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    """One V2 output tensor; orjson writes float64 with exact round-trip.

    Args:
        name: the output's name.
        values: its values (numbers, or string class labels).

    Returns:
        The tensor dict (name, datatype, shape, data).
    """
    if values.dtype.kind in "biuf":
        data: Any = np.ascontiguousarray(values).ravel()
    else:  # string class labels
        data = [str(v) for v in values.ravel()]
    return {"name": name, "datatype": datatype_of(values), "shape": list(values.shape), "data": data}


def encode_response(
    model_name: str, model_version: str | None, request_id: str | None, results: Mapping[str, np.ndarray],
    binary: Collection[str] = (),
) -> tuple[bytes, int | None]:
    """The V2 response body, and the JSON header's length when some outputs are binary (else None).

    Args:
        model_name: the model's name.
        model_version: the served version (None before load).
        request_id: the request's id, echoed when given.
        results: output name -> values, in answer order.
        binary: outputs to send as raw bytes after the JSON header (binary tensor extension).

    Returns:
        (response body, JSON header length or None).
    """
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    tensors, chunks = [], []
    for name, values in results.items():
        if name in binary:
            chunk = raw_bytes(values)
            chunks.append(chunk)
            tensors.append({"name": name, "datatype": datatype_of(values), "shape": list(values.shape),
                            "parameters": {"binary_data_size": len(chunk)}})
        else:
            tensors.append(output_tensor(name, values))
    response["outputs"] = tensors
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
