"""Decoding and validation of V2 requests (serving.v2): every client mistake, named."""

from __future__ import annotations

import math
import warnings

import numpy as np
import orjson
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from serving import v2

FEATURES = ("age", "sex", "bmi")
SPEC = v2.InputSpec(FEATURES)
REGRESSION = ("predict",)
CLASSIFICATION = ("predict", "predict_proba")


def body(data=None, shape=None, datatype="FP64", name="input-0", **extra) -> bytes:
    data = [0.1, 0.2, 0.3] if data is None else data
    tensor = {"name": name, "datatype": datatype, "shape": shape or [1, 3], "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def decode(raw: bytes, available=REGRESSION) -> v2.DecodedRequest:
    return v2.decode_json_request(raw, SPEC, available, ("predict",))


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(b"{bad", "malformed JSON", id="malformed-json"),
        pytest.param(b"", "request body is empty", id="empty-body"),
        pytest.param(b"[1, 2]", "JSON list; expected an object", id="not-an-object"),
        pytest.param(b"{}", "'inputs' is missing", id="no-inputs"),
        pytest.param(b'{"inputs": []}', "'inputs' is []; expected a list with one tensor of shape [batch, 3]", id="empty-inputs"),
        pytest.param(b'{"inputs": {"name": "input-0"}}', "'inputs' is {'name': 'input-0'}", id="inputs-not-list"),
        pytest.param(orjson.dumps({"inputs": [{}, {}]}), "do not match the model's features; missing features: 'age', 'sex', 'bmi'; unknown inputs: None, None", id="two-inputs"),
        pytest.param(b'{"inputs": [7]}', "inputs[0] is 7; expected a tensor object", id="input-not-object"),
        pytest.param(body(datatype="BYTES"), "inputs[0].datatype is 'BYTES'; expected one of FP64", id="bytes-datatype"),
        pytest.param(body(datatype="BOOL"), "inputs[0].datatype is 'BOOL'", id="bool-datatype"),
        pytest.param(body(datatype=None), "inputs[0].datatype is None", id="no-datatype"),
        pytest.param(body(data=[1.0, 2.0], shape=[1, 2]), "2 features per row; this model takes 3 (age, sex, bmi)",
                     id="too-few-features"),
        pytest.param(body(data=[1.0] * 4, shape=[1, 4]), "4 features per row; this model takes 3", id="too-many-features"),
        pytest.param(body(shape=[3]), "inputs[0].shape is [3]; expected [batch, 3] with batch >= 1", id="shape-1d"),
        pytest.param(body(shape=[1, 3, 1]), "inputs[0].shape is [1, 3, 1]", id="shape-3d"),
        pytest.param(body(shape=["1", 3]), "inputs[0].shape is ['1', 3]", id="shape-string"),
        pytest.param(body(shape=[True, 3]), "inputs[0].shape is [True, 3]", id="shape-bool"),
        pytest.param(body(shape=[1.0, 3]), "inputs[0].shape is [1.0, 3]", id="shape-float"),
        pytest.param(body(data=[], shape=[0, 3]), "expected [batch, 3] with batch >= 1", id="batch-zero"),
        pytest.param(body(data=[0.1] * 3, shape=[2, 3]), "inputs[0].shape needs 6 values; data holds 3", id="shape-vs-data"),
        pytest.param(body(data=[[0.1, 0.2, 0.3], [0.4, 0.5]], shape=[2, 3]), "ragged", id="ragged-nested"),
        pytest.param(body(data=[0.1, "a", 0.3]), "holds 'a'; expected only numbers", id="string-value"),
        pytest.param(body(data=[0.1, "0.2", 0.3]), "holds '0.2'; expected only numbers", id="numeric-string"),
        pytest.param(body(data=[0.1, None, 0.3]), "holds None; expected only numbers", id="null-value"),
        pytest.param(body(data=[0.1, True, 0.3]), "holds True; expected only numbers", id="bool-value"),
        pytest.param(body(data=[True, False, True]), "holds True; expected only numbers", id="all-bools"),
        pytest.param(body(data=[0.1, {"v": 1}, 0.3]), "holds {'v': 1}; expected only numbers", id="object-value"),
        pytest.param(b'{"inputs": [{"name": "input-0", "datatype": "INT64", "shape": [1, 3], "data": [1, 1180591620717411303424, 3]}]}',
                     "INT64 but data holds non-integer numbers (or integers beyond 64 bits)", id="int-beyond-64-bits"),
        pytest.param(body(data=[2 ** 63, 0, 1], datatype="INT64"),
                     "INT64 but data holds non-integer numbers (or integers beyond 64 bits)", id="int64-plus-one"),
        pytest.param(body(data="0.1,0.2,0.3"), "inputs[0].data is '0.1,0.2,0.3'; expected a list of numbers", id="data-string"),
        pytest.param(orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3]}]}),
                     "inputs[0].data is None", id="no-data"),
        pytest.param(b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [1e999, 0, 0]}]}',
                     "malformed JSON: number is infinity", id="inf-literal"),
        pytest.param(b'{"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [NaN, 0, 0]}]}',
                     "malformed JSON", id="nan-literal"),
        pytest.param(body(data=[1e300, 0.0, 0.0], datatype="FP32"),
                     "holds inf at row 0, feature 'age' (NaN, Inf, or out of FP32 range); expected finite numbers",
                     id="fp32-overflow"),
        pytest.param(body(data=[1.5, 2, 3], datatype="INT32"), "datatype is INT32 but data holds non-integer", id="float-as-int"),
        pytest.param(body(data=[300, 2, 3], datatype="INT8"), "outside INT8 range [-128, 127]", id="int8-range"),
        pytest.param(body(data=[-1, 2, 3], datatype="UINT16"), "outside UINT16 range", id="negative-uint"),
        pytest.param(body(outputs=[{"name": "predict_proba"}]), "outputs names 'predict_proba'; this model offers predict",
                     id="output-not-offered"),
        pytest.param(body(outputs={"name": "predict"}), "'outputs' is {'name': 'predict'}; expected a list", id="outputs-not-list"),
        pytest.param(body(outputs=["predict"]), "'outputs' is ['predict']; expected a list of objects", id="outputs-strings"),
        pytest.param(body(id=7), "id is 7; expected a string", id="id-not-string"),
    ],
)
def test_bad_request_is_refused_with_a_message_naming_the_problem(raw: bytes, expected: str) -> None:
    with pytest.raises(v2.InvalidRequest) as caught:
        decode(raw)
    assert expected in str(caught.value)
    assert caught.value.status == 400


# A model that computes in float32 behind a scaler takes a narrower range per feature.
RANGED = v2.InputSpec(FEATURES, low=[-10.0, -1e37, 0.0], high=[10.0, 1e37, 5.0],
                      range_reason="RandomForestRegressor computes in float32")


@pytest.mark.parametrize(
    "data, shape, datatype, expected",
    [
        pytest.param([1e300, 0.0, 1.0], [1, 3], "FP64", "inputs[0].data holds 1e+300 at row 0, feature 'age'; "
                     "this model takes 'age' in [-10, 10] (RandomForestRegressor computes in float32)", id="1e300"),
        pytest.param([0.0, -2e37, 1.0], [1, 3], "FP64", "holds -2e+37 at row 0, feature 'sex'; "
                     "this model takes 'sex' in [-1e+37, 1e+37]", id="below-low"),
        pytest.param([0.0, 0.0, 1.0, 0.0, 0.0, 5.5], [2, 3], "FP64", "holds 5.5 at row 1, feature 'bmi'", id="second-row"),
        pytest.param([0, 0, 6], [1, 3], "INT64", "holds 6.0 at row 0, feature 'bmi'; this model takes 'bmi' in [0, 5]",
                     id="integer"),
        pytest.param([11.0, 0.0, 1.0], [1, 3], "FP32", "holds 11.0 at row 0, feature 'age'", id="fp32"),
    ],
)
def test_values_beyond_what_the_model_takes_are_refused(data, shape, datatype, expected) -> None:
    raw = orjson.dumps({"inputs": [{"name": "input-0", "datatype": datatype, "shape": shape, "data": data}]})
    with pytest.raises(v2.InvalidRequest) as caught:
        v2.decode_json_request(raw, RANGED, REGRESSION, REGRESSION)
    assert expected in str(caught.value)
    assert caught.value.status == 400


def test_grpc_requests_are_held_to_the_same_range() -> None:
    with pytest.raises(v2.InvalidRequest, match=r"holds 1e\+300 at row 0, feature 'age'; this model takes 'age' in \[-10, 10\]"):
        v2.decode_infer_request(infer_request([1e300, 0.0, 1.0]), RANGED, REGRESSION, REGRESSION)


def test_the_range_bounds_themselves_are_taken() -> None:
    for row in ([-10.0, -1e37, 0.0], [10.0, 1e37, 5.0]):
        np.testing.assert_array_equal(v2.decode_json_request(body(data=row), RANGED, REGRESSION, REGRESSION).x, [row])
    grpc = v2.decode_infer_request(infer_request([10.0, 1e37, 5.0]), RANGED, REGRESSION, REGRESSION)
    np.testing.assert_array_equal(grpc.x, [[10.0, 1e37, 5.0]])


def test_a_spec_without_bounds_takes_every_finite_float64_and_builds_without_warnings() -> None:
    # Built inside the test, not at import: mutmut switches a mutant on only while tests run.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated numpy call would become an error in a later numpy
        spec = v2.InputSpec(FEATURES)
    biggest = float(np.finfo(np.float64).max)
    for row in ([-biggest, 0.0, biggest], [-1e300, -1.0, 1e-300]):
        np.testing.assert_array_equal(v2.decode_json_request(body(data=row), spec, REGRESSION, REGRESSION).x, [row])
    with pytest.raises(v2.InvalidRequest, match=r"holds inf at row 0, feature 'sex' \(NaN, Inf, or out of FP32"):
        v2.decode_json_request(body(data=[0.0, 1e39, 0.0], datatype="FP32"), spec, REGRESSION, REGRESSION)


def test_an_fp32_overflow_is_a_400_and_no_runtime_warning() -> None:
    # A warning per bad request would flood the server log; the 400 already tells the client.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(v2.InvalidRequest, match="holds inf at row 0, feature 'age'"):
            decode(body(data=[1e300, 0.0, 0.0], datatype="FP32"))


def test_range_needs_one_bound_per_feature() -> None:
    with pytest.raises(ValueError, match=r"InputSpec.high has shape \(2,\); expected \(3,\), one per feature"):
        v2.InputSpec(FEATURES, high=[1.0, 2.0])


def test_long_client_values_are_shortened_in_errors() -> None:
    with pytest.raises(v2.InvalidRequest) as caught:
        decode(body(datatype="n" * 500))
    assert "n" * 100 not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "data, shape",
    [
        pytest.param([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [2, 3], id="flat"),
        pytest.param([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [2, 3], id="nested"),
        pytest.param([[[0.1, 0.2, 0.3]], [[0.4, 0.5, 0.6]]], [2, 3], id="deeper-nesting"),
        pytest.param([1, 2, 3, 4, 5, 6], [2, 3], id="json-integers-as-fp64"),
    ],
)
def test_flat_and_nested_data_give_the_same_rows(data, shape) -> None:
    x = decode(body(data=data, shape=shape)).x
    assert x.dtype == np.float64 and x.shape == (2, 3)
    np.testing.assert_array_equal(x.ravel(), np.array(data, dtype=np.float64).ravel())


@pytest.mark.parametrize("datatype", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"])
def test_integer_datatypes_are_accepted(datatype: str) -> None:
    x = decode(body(data=[1, 2, 127], datatype=datatype)).x
    np.testing.assert_array_equal(x, [[1.0, 2.0, 127.0]])


@pytest.mark.parametrize("datatype, dtype", [("FP32", np.float32), ("FP16", np.float16)])
def test_lower_precision_floats_are_rounded_as_the_client_declared(datatype: str, dtype) -> None:
    values = [0.1, 0.2, 0.3]
    x = decode(body(data=values, datatype=datatype)).x
    np.testing.assert_array_equal(x[0], np.array(values, dtype=dtype).astype(np.float64))


def test_any_batch_size() -> None:
    rows = np.random.default_rng(0).normal(size=(1000, 3))
    x = decode(body(data=rows.tolist(), shape=[1000, 3])).x
    np.testing.assert_array_equal(x, rows)


def test_literal_true_inside_parameters_does_not_make_numbers_invalid() -> None:
    decoded = decode(body(parameters={"binary_data_output": False}, id="req-1"))
    assert decoded.request_id == "req-1"
    np.testing.assert_array_equal(decoded.x, [[0.1, 0.2, 0.3]])


def test_outputs_default_and_requested() -> None:
    assert decode(body()).outputs == ("predict",)
    requested = decode(body(outputs=[{"name": "predict_proba"}, {"name": "predict"}, {"name": "predict_proba"}]),
                       available=CLASSIFICATION)
    assert requested.outputs == ("predict_proba", "predict")


def infer_request(values, datatype="FP64", shape=(1, 3), outputs=None) -> InferRequest:
    tensor = InferInput("input-0", list(shape), datatype, values)
    requested = [RequestedOutput(name) for name in outputs] if outputs else None
    return InferRequest("m", [tensor], request_id="r1", request_outputs=requested)


def test_kserve_infer_request_is_checked_the_same_way() -> None:
    decoded = v2.decode_infer_request(infer_request([0.1, 0.2, 0.3], outputs=["predict_proba"]), SPEC,
                                      CLASSIFICATION, ("predict",))
    np.testing.assert_array_equal(decoded.x, [[0.1, 0.2, 0.3]])
    assert decoded.outputs == ("predict_proba",) and decoded.request_id == "r1"


@pytest.mark.parametrize(
    "request_, expected",
    [
        pytest.param(infer_request([0.1, math.nan, 0.3]), "holds nan at row 0, feature 'sex'", id="nan"),
        pytest.param(infer_request([0.1, 0.2, math.inf]), "holds inf at row 0, feature 'bmi'", id="inf"),
        pytest.param(infer_request([0.1, 0.2, 0.3], shape=(2, 3)), "inputs[0] data does not fit its shape", id="shape-vs-data"),
        pytest.param(infer_request([b"a", b"b", b"c"], datatype="BYTES"), "datatype is 'BYTES'", id="bytes"),
        pytest.param(InferRequest("m", []), "'inputs' is []", id="no-inputs"),
        pytest.param(infer_request([0.1, 0.2, 0.3], outputs=["proba"]), "outputs names 'proba'", id="unknown-output"),
    ],
)
def test_bad_kserve_infer_request(request_: InferRequest, expected: str) -> None:
    with pytest.raises(v2.InvalidRequest) as caught:
        v2.decode_infer_request(request_, SPEC, CLASSIFICATION, ("predict",))
    assert expected in str(caught.value)


def test_response_round_trips_float64_exactly() -> None:
    values = np.random.default_rng(1).normal(size=17) * 1e3
    proba = np.random.default_rng(2).random(size=(17, 2))
    raw, header_length = v2.encode_response("m", "3", "req-9", {"predict": values, "predict_proba": proba})
    assert header_length is None
    response = orjson.loads(raw)
    assert response["model_name"] == "m" and response["model_version"] == "3" and response["id"] == "req-9"
    predict, predict_proba = response["outputs"]
    assert predict["datatype"] == "FP64" and predict["shape"] == [17]
    np.testing.assert_array_equal(np.array(predict["data"]), values)
    assert predict_proba["shape"] == [17, 2]
    np.testing.assert_array_equal(np.array(predict_proba["data"]).reshape(17, 2), proba)


@pytest.mark.parametrize(
    "labels, datatype, data",
    [
        pytest.param(np.array([0, 1, 1]), "INT64", [0, 1, 1], id="int-labels"),
        pytest.param(np.array(["no", "yes", "no"]), "BYTES", ["no", "yes", "no"], id="string-labels"),
    ],
)
def test_class_labels_keep_their_type(labels: np.ndarray, datatype: str, data: list) -> None:
    raw, _ = v2.encode_response("m", None, None, {"predict": labels})
    tensor = orjson.loads(raw)["outputs"][0]
    assert tensor["datatype"] == datatype and tensor["data"] == data
    assert "id" not in orjson.loads(raw)


# ---------------------------------------------------------------- edges that mutation testing found unpinned

@pytest.mark.parametrize("data, shown", [([0.1, False, 0.3], "False"), ([False, 0.2, 0.3], "False"),
                                         ([[0.1, 0.2, 0.3], [0.4, 0.5, False]], "False")])
def test_a_false_among_numbers_is_refused_like_true(data, shown) -> None:
    raw = body(data=data, shape=[len(data) if isinstance(data[0], list) else 1, 3])
    assert b"true" not in raw  # only the literal false: its own scan must find it
    with pytest.raises(v2.InvalidRequest, match=f"holds {shown}; expected only numbers"):
        decode(raw)


def test_more_data_than_the_shape_is_refused() -> None:
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\].shape needs 3 values; data holds 6"):
        decode(body(data=[0.1] * 6, shape=[1, 3]))


@pytest.mark.parametrize("datatype, low, high", [("INT8", -128, 127), ("INT16", -(2 ** 15), 2 ** 15 - 1),
                                                 ("UINT8", 0, 255), ("UINT16", 0, 2 ** 16 - 1)])
def test_integer_datatypes_accept_their_edges_and_refuse_one_beyond(datatype, low, high) -> None:
    np.testing.assert_array_equal(decode(body(data=[low, high, low], datatype=datatype)).x, [[low, high, low]])
    for outside in (low - 1, high + 1):
        with pytest.raises(v2.InvalidRequest, match=f"outside {datatype} range \\[{low}, {high}\\]"):
            decode(body(data=[outside, 1, 1], datatype=datatype))


def test_an_empty_id_is_echoed_over_rest_and_absent_over_grpc() -> None:
    decoded = decode(body(id=""))
    assert decoded.request_id == ""  # a string: REST echoes what it got
    raw, _ = v2.encode_response("m", None, decoded.request_id, {"predict": np.array([1.0])})
    assert orjson.loads(raw)["id"] == ""
    with pytest.raises(v2.InvalidRequest, match="id is 7; expected a string"):
        decode(body(id=7))
    grpc_request = pb.ModelInferRequest(model_name="m", id="", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=[1, 3], contents=pb.InferTensorContents(fp64_contents=[1, 2, 3]))])
    assert v2.decode_grpc_request(grpc_request, SPEC, REGRESSION, ("predict",)).request_id is None  # proto3: unset
    grpc_request.id = "g-1"
    assert v2.decode_grpc_request(grpc_request, SPEC, REGRESSION, ("predict",)).request_id == "g-1"


def test_boolean_outputs_travel_as_bool_in_json_and_as_one_byte_each_in_binary() -> None:
    flags = np.array([True, False, True])
    raw, header_length = v2.encode_response("m", None, None, {"predict": flags})
    assert header_length is None
    assert orjson.loads(raw)["outputs"] == [{"name": "predict", "datatype": "BOOL", "shape": [3],
                                             "data": [True, False, True]}]
    raw, header_length = v2.encode_response("m", None, None, {"predict": flags}, binary=("predict",))
    header = orjson.loads(raw[:header_length])
    assert header["outputs"] == [{"name": "predict", "datatype": "BOOL", "shape": [3],
                                  "parameters": {"binary_data_size": 3}}]
    assert raw[header_length:] == b"\x01\x00\x01"
    assert v2.raw_bytes(np.array([1, 258], ">i4")) == b"\x01\x00\x00\x00\x02\x01\x00\x00"  # little-endian
    assert v2.raw_bytes(np.array(["ab", ""])) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"  # length-prefixed


def grpc_tensor(**fields):
    return pb.ModelInferRequest.InferInputTensor(**{"name": "input-0", "datatype": "FP64", "shape": [1, 3], **fields})


def test_grpc_raw_contents_are_read_in_place_and_checked() -> None:
    raw = np.array([0.5, 1.5, 2.5], "<f8").tobytes()
    request = pb.ModelInferRequest(inputs=[grpc_tensor()], raw_input_contents=[raw], id="r")
    decoded = v2.decode_grpc_request(request, SPEC, REGRESSION, ("predict",))
    np.testing.assert_array_equal(decoded.x, [[0.5, 1.5, 2.5]])
    assert (decoded.outputs, decoded.request_id) == (("predict",), "r")
    request.outputs.add(name="predict_proba")
    assert v2.decode_grpc_request(request, SPEC, CLASSIFICATION, ("predict",)).outputs == ("predict_proba",)
    two = pb.ModelInferRequest(inputs=[grpc_tensor()], raw_input_contents=[raw, raw])
    with pytest.raises(v2.InvalidRequest, match="raw_input_contents holds 2 entries for 1 inputs; expected one per"):
        v2.decode_grpc_request(two, SPEC, REGRESSION, ("predict",))
    both = pb.ModelInferRequest(inputs=[grpc_tensor(contents=pb.InferTensorContents(fp64_contents=[1, 2, 3]))],
                                raw_input_contents=[raw])
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\] has contents and raw_input_contents; send one"):
        v2.decode_grpc_request(both, SPEC, REGRESSION, ("predict",))
    short = pb.ModelInferRequest(inputs=[grpc_tensor()], raw_input_contents=[raw[:16]])
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\] has 16 bytes of data; its shape and datatype FP64 need "
                                                r"3 x 8 = 24"):
        v2.decode_grpc_request(short, SPEC, REGRESSION, ("predict",))


def test_binary_fp64_rows_are_read_in_place_from_the_body() -> None:
    # No copy of the client's bytes: a large binary batch is not held twice in memory.
    rows = np.arange(6, dtype="<f8").reshape(2, 3)
    header = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 3],
                                       "parameters": {"binary_data_size": rows.nbytes}}]})
    raw = header + rows.tobytes()
    x = v2.decode_json_request(raw, SPEC, REGRESSION, REGRESSION, str(len(header))).x
    np.testing.assert_array_equal(x, rows)
    assert np.shares_memory(x, np.frombuffer(raw, np.uint8))


def test_grpc_pandas_inputs_one_per_feature_by_name() -> None:
    request = pb.ModelInferRequest(inputs=[
        pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP64", shape=[2],
                                              contents=pb.InferTensorContents(fp64_contents=values))
        for name, values in (("bmi", [3, 6]), ("age", [1, 4]), ("sex", [2, 5]))])
    np.testing.assert_array_equal(v2.decode_grpc_request(request, SPEC, REGRESSION, ("predict",)).x,
                                  [[1, 2, 3], [4, 5, 6]])


def test_v1_instances_are_checked_as_fp64_rows() -> None:
    np.testing.assert_array_equal(v2.decode_v1_request(b'{"instances": [[1, 2, 3]]}', SPEC), [[1, 2, 3]])
    with pytest.raises(v2.InvalidRequest, match="instances.data holds True; expected only numbers"):
        v2.decode_v1_request(b'{"instances": [[1, true, 3]]}', SPEC)
    with pytest.raises(v2.InvalidRequest, match=r"instances.data holds 1e\+300 at row 0, feature 'sex'"):
        v2.decode_v1_request(b'{"instances": [[1, 1e300, 3]]}', v2.InputSpec(FEATURES, low=np.zeros(3),
                                                                               high=np.ones(3) * 10))
    with pytest.raises(v2.InvalidRequest, match="request body is empty; expected a JSON object with an 'instances' list"):
        v2.decode_v1_request(b"", SPEC)


def test_values_in_messages_are_cut_to_a_bounded_length() -> None:
    limit = v2._MAX_SHOWN
    fits = "x" * (limit - 2)  # repr adds the quotes: exactly the limit
    assert v2._show(fits) == repr(fits)
    longer = "x" * (limit - 1)
    assert v2._show(longer) == repr(longer)[: limit - 3] + "..." and len(v2._show(longer)) == limit


# ---------------------------------------------------------------- parameters objects, pandas-style inputs, gRPC contents

def decode_binary(tensors: list[dict], raw: bytes) -> v2.DecodedRequest:
    """Decode a binary-extension body: the JSON header of `tensors`, then `raw`."""
    header = orjson.dumps({"inputs": tensors})
    return v2.decode_json_request(header + raw, SPEC, REGRESSION, REGRESSION, str(len(header)))


def column(name, data, datatype="FP64", shape=None, **extra) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data, **extra}


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(body(parameters=5), "request.parameters is 5; expected an object", id="request-parameters"),
        pytest.param(orjson.dumps({"inputs": [{**orjson.loads(body())["inputs"][0], "parameters": [1]}]}),
                     "inputs[0].parameters is [1]; expected an object", id="input-parameters"),
        pytest.param(body(outputs=[{"name": "predict", "parameters": "x"}]),
                     "outputs[0].parameters is 'x'; expected an object", id="output-parameters"),
        pytest.param(body(outputs=[{"name": "predict", "parameters": {"binary_data": "yes"}}]),
                     "outputs[0].parameters.binary_data is 'yes'; expected true or false", id="binary-data-not-bool"),
    ],
)
def test_parameters_that_are_not_objects_are_named_where_they_are(raw: bytes, expected: str) -> None:
    # The request's own parameters were named "inputs[].parameters" before (a bug).
    with pytest.raises(v2.InvalidRequest) as caught:
        decode(raw)
    assert expected in str(caught.value)


def test_a_binary_data_size_must_be_a_byte_count_and_zero_is_one() -> None:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 3], "parameters": {"binary_data_size": True}}
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\].parameters.binary_data_size is True; expected a byte"):
        decode_binary([tensor], b"")
    tensor["parameters"]["binary_data_size"] = 0  # a count; it is the shape that needs more
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\] has 0 bytes of data; its shape and datatype FP64 need "
                                                r"3 x 8 = 24"):
        decode_binary([tensor], b"")


def test_binary_pandas_inputs_each_read_their_own_bytes() -> None:
    columns = {"bmi": [3.0, 6.0], "age": [1.0, 4.0], "sex": [2.0, 5.0]}
    tensors = [{"name": n, "datatype": "FP64", "shape": [2], "parameters": {"binary_data_size": 16}} for n in columns]
    raw = b"".join(np.array(v, "<f8").tobytes() for v in columns.values())
    x = decode_binary(tensors, raw).x
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    tensors[1]["parameters"]["binary_data_size"] = 8  # age's 2 rows in 8 bytes
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[1\] has 8 bytes of data; its shape and datatype FP64 need "
                                                r"2 x 8 = 16"):
        decode_binary(tensors, raw[:40])


def test_content_type_pd_makes_a_single_input_a_feature_column() -> None:
    one = v2.InputSpec(("age",))
    for raw in (orjson.dumps({"inputs": [column("age", [1.0, 2.0])], "parameters": {"content_type": "pd"}}),
                orjson.dumps({"inputs": [column("age", [1.0, 2.0], parameters={"content_type": "pd"})]})):
        np.testing.assert_array_equal(v2.decode_json_request(raw, one, REGRESSION, REGRESSION).x, [[1.0], [2.0]])
    plain = orjson.dumps({"inputs": [column("age", [1.0, 2.0])]})  # no pd: a [batch, n_features] tensor
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\].shape is \[2\]; expected \[batch, 1\]"):
        v2.decode_json_request(plain, one, REGRESSION, REGRESSION)
    grpc = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(
        name="age", datatype="FP64", shape=[2], contents=pb.InferTensorContents(fp64_contents=[1.0, 2.0]))])
    grpc.parameters["content_type"].string_param = "pd"
    np.testing.assert_array_equal(v2.decode_grpc_request(grpc, one, REGRESSION, REGRESSION).x, [[1.0], [2.0]])


def pandas(*tensors: dict) -> bytes:
    return orjson.dumps({"inputs": list(tensors)})


@pytest.mark.parametrize(
    "raw, expected",
    [
        pytest.param(pandas(column("age", [1]), column("age", [1]), column("sex", [1]), column("bmi", [1])),
                     "do not match the model's features; repeated inputs: 'age'; this model takes age, sex, bmi",
                     id="repeated"),
        pytest.param(pandas(column("age", [1]), column("sex", [1]), column("bmi", [1]), column("bp", [1])),
                     "do not match the model's features; unknown inputs: 'bp'; this model", id="unknown-only"),
        pytest.param(pandas(column("age", [1]), column("sex", [1])),
                     "do not match the model's features; missing features: 'bmi'; this model", id="missing-only"),
        pytest.param(pandas(*[{"name": n} for n in (None, 5, None, 5)]),
                     "unknown inputs: None, 5, None, 5; repeated inputs: 5, None", id="repeated-names-of-any-type"),
        pytest.param(pandas(column("age", [1, 2]), column("sex", [1]), column("bmi", [1, 2])),
                     "inputs[1] ('sex') has 1 rows; inputs[0] has 2: every feature needs the same number of rows",
                     id="unequal-rows"),
        pytest.param(pandas(column("age", [1]), column("sex", [300], "INT8"), column("bmi", [1])),
                     "inputs[1].data holds values outside INT8 range [-128, 127]", id="column-datatype-range"),
        pytest.param(pandas(column("age", [1]), column("sex", [1e39], "FP32"), column("bmi", [1])),
                     "inputs[1].data holds inf at row 0, feature 'sex' (NaN, Inf, or out of FP32 range)",
                     id="column-overflow"),
    ] + [
        pytest.param(pandas(column("age", [1]), column("sex", [1], shape=shape), column("bmi", [1])),
                     f"inputs[1].shape is {shown}; expected [batch] or [batch, 1], batch >= 1", id=f"shape-{shown}")
        for shape, shown in (([0], "[0]"), ([1, 1, 1], "[1, 1, 1]"), ([1, 2], "[1, 2]"), (["1"], "['1']"))
    ],
)
def test_pandas_style_inputs_that_do_not_fit_are_refused(raw: bytes, expected: str) -> None:
    with pytest.raises(v2.InvalidRequest) as caught:
        decode(raw)
    assert expected in str(caught.value)


def test_pandas_style_inputs_of_one_row_and_of_shape_batch_by_one() -> None:
    x = decode(pandas(column("sex", [2]), column("age", [1], shape=[1, 1]), column("bmi", [3]))).x
    np.testing.assert_array_equal(x, [[1, 2, 3]])
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[2\].data holds 6.0 at row 0, feature 'bmi'; this model "
                                                r"takes 'bmi' in \[0, 5\]"):
        v2.decode_json_request(pandas(column("age", [1]), column("sex", [1]), column("bmi", [6])), RANGED,
                               REGRESSION, REGRESSION)


def test_uint64_values_beyond_int64_are_taken_exactly_over_json_and_grpc() -> None:
    big = [2 ** 64 - 1, 1, 2 ** 63]
    assert decode(body(data=big, datatype="UINT64")).x.tolist() == [[float(v) for v in big]]
    grpc = pb.ModelInferRequest(inputs=[grpc_tensor(datatype="UINT64",
                                                    contents=pb.InferTensorContents(uint64_contents=big))])
    # It was refused as "non-integer numbers": numpy read the typed contents as float64 (a bug).
    assert v2.decode_grpc_request(grpc, SPEC, REGRESSION, REGRESSION).x.tolist() == [[float(v) for v in big]]
    for data, expected in (([2 ** 63, 0.5, 1], "UINT64 but data holds non-integer numbers"),
                           ([2 ** 63, -1, 0], "UINT64 but data holds non-integer numbers")):
        with pytest.raises(v2.InvalidRequest, match=expected):
            decode(body(data=data, datatype="UINT64"))


@pytest.mark.parametrize(
    "tensor, expected",
    [
        pytest.param(grpc_tensor(datatype="FP16", contents=pb.InferTensorContents(fp32_contents=[1, 2, 3])),
                     "inputs[0].datatype FP16 travels only as raw_input_contents", id="fp16-typed"),
        pytest.param(grpc_tensor(datatype="BYTES", contents=pb.InferTensorContents(bytes_contents=[b"a"] * 3)),
                     "inputs[0].datatype is 'BYTES'; expected one of FP64", id="bytes"),
        pytest.param(grpc_tensor(), "inputs[0].shape needs 3 values; data holds 0", id="no-contents"),
        pytest.param(grpc_tensor(datatype="INT8", contents=pb.InferTensorContents(int_contents=[300, 0, 0])),
                     "inputs[0].data holds values outside INT8 range [-128, 127]", id="int8-in-int-contents"),
    ],
)
def test_bad_grpc_typed_contents_are_named(tensor, expected: str) -> None:
    with pytest.raises(v2.InvalidRequest) as caught:
        v2.decode_grpc_request(pb.ModelInferRequest(inputs=[tensor]), SPEC, REGRESSION, REGRESSION)
    assert expected in str(caught.value)


def test_kserve_infer_requests_name_the_input_and_take_pandas_columns() -> None:
    bad = InferRequest("m", [InferInput("input-0", [1, 3], "BOOL", [True, False, True])])
    with pytest.raises(v2.InvalidRequest, match=r"inputs\[0\].datatype is 'BOOL'"):
        v2.decode_infer_request(bad, SPEC, REGRESSION, REGRESSION)
    columns = [InferInput(name, [2], "FP64", values) for name, values in
               (("bmi", [3.0, 6.0]), ("age", [1.0, 4.0]), ("sex", [2.0, 5.0]))]
    x = v2.decode_infer_request(InferRequest("m", columns), SPEC, REGRESSION, REGRESSION).x
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])


def test_v1_rows_nested_beyond_one_level_are_refused() -> None:
    with pytest.raises(v2.InvalidRequest, match="instances.shape needs 3 values; data holds 6"):
        v2.decode_v1_request(b'{"instances": [[[1, 2], [3, 4], [5, 6]]]}', SPEC)


def test_outputs_an_empty_list_and_per_output_binary_flags() -> None:
    assert decode(body(outputs=[]), available=CLASSIFICATION).outputs == ("predict",)
    mixed = decode(body(outputs=[{"name": "predict", "parameters": {"binary_data": True}}, {"name": "predict_proba"}]),
                   available=CLASSIFICATION)
    assert (mixed.outputs, mixed.binary) == (("predict", "predict_proba"), frozenset({"predict"}))
    # The request-wide flag is each output's default; an output's own flag wins.
    override = decode(body(parameters={"binary_data_output": True},
                           outputs=[{"name": "predict"}, {"name": "predict_proba", "parameters": {"binary_data": False}}]),
                      available=CLASSIFICATION)
    assert override.binary == frozenset({"predict"})


@pytest.mark.parametrize(
    "datatype, contents, rows",
    [
        pytest.param("FP64", {"fp64_contents": [0.5, -1.5, 2.25]}, [0.5, -1.5, 2.25], id="fp64"),
        pytest.param("FP32", {"fp32_contents": [0.1, -2.0, 3.0]}, np.array([0.1, -2, 3], np.float32).tolist(), id="fp32"),
        pytest.param("INT32", {"int_contents": [-1, 0, 7]}, [-1, 0, 7], id="int32"),
        pytest.param("INT64", {"int64_contents": [-(2 ** 62), 0, 2 ** 62]}, [-(2.0 ** 62), 0, 2.0 ** 62], id="int64"),
    ],
)
def test_grpc_typed_contents_keep_their_values(datatype: str, contents: dict, rows: list) -> None:
    tensor = grpc_tensor(datatype=datatype, contents=pb.InferTensorContents(**contents))
    x = v2.decode_grpc_request(pb.ModelInferRequest(inputs=[tensor]), SPEC, REGRESSION, REGRESSION).x
    assert x.tolist() == [rows]
