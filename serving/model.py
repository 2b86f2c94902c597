"""The scikit-learn model behind the V2 endpoints: a ``kserve.Model`` subclass.

The fast REST route calls ``infer_json`` (V2) and ``infer_v1`` (V1); the gRPC servicer calls
``infer_grpc_together`` (small requests that arrived together, computed at once on its thread) or
``infer_grpc``; kserve's own V2 handler (fast route off) calls ``predict``. All decode with
``serving.v2``; all but ``infer_grpc_together`` compute through ``_results``: the adaptive batcher
(``serving.batching``, SERVING_BATCHING=0 turns it off) in front of the prediction engine
(``serving.engine``); ``infer_grpc_together`` shares the batcher's model calls synchronously.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import orjson
from kserve.errors import ModelNotFound, ModelNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving import v2
from serving.artifact import ArtifactError, ModelArtifact, load_artifact
from serving.batching import AdaptiveBatcher, BatchingConfig, BatchStats
from serving.engine import compile_predictor
from serving.inference_log import InferenceLog
from serving.rows import input_spec
from serving.settings import ServingSettings

log = logging.getLogger(__name__)

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
DEFAULT_OUTPUTS = (PREDICT,)
PLATFORM = "sklearn"
TRITON_TYPE = {datatype: f"TYPE_{'STRING' if datatype == 'BYTES' else datatype}" for datatype in (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES")}


class SklearnModel(kserve.Model):
    """Serves one model folder (model.skops, verified against metadata.json; never the pickle) over V2."""

    def __init__(self, name: str, model_dir: Path | str, batching: BatchingConfig | None = None,
                 fast_path: bool | None = None, inference_log: InferenceLog | None = None) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        # None: what the environment says (python -m serving passes what it read once at start)
        from_env = ServingSettings.from_env() if batching is None or fast_path is None else None
        self.batching = batching or from_env.batching_config
        self.fast_path = from_env.fast_path if fast_path is None else fast_path
        self.artifact: ModelArtifact | None = None
        self.spec: v2.InputSpec | None = None
        self.load_error: str | None = None
        self._batchers: dict[str, AdaptiveBatcher] = {}  # one per output ("predict", "predict_proba")
        self.inference_log = inference_log  # None: traffic is not logged (SERVING_INFERENCE_LOG unset)

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> bool:
        """Load and verify the model folder.

        On failure the model stays not ready with load_error set: logged, not raised.

        Returns:
            True when loaded and ready, False when not.
        """
        try:
            artifact = load_artifact(self.model_dir)
        except ArtifactError as exc:
            self.ready, self.artifact, self.load_error = False, None, str(exc)
            log.error("model not loaded, it stays not ready: %s", exc,
                      extra={"model": self.name, "model_dir": str(self.model_dir)})
            return False
        self._activate(artifact)
        meta = artifact.metadata
        log.info("model loaded", extra={
            "model": self.name, "version": artifact.version, "task": artifact.task,
            "estimator": meta.get("estimator"), "sha256": meta["sha256"], "features": len(artifact.feature_names),
        })
        return True

    def _activate(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        self.spec = input_spec(artifact.estimator, artifact.feature_names)
        self._batchers = {
            out: AdaptiveBatcher(compile_predictor(artifact.estimator, out, fast=self.fast_path), self.batching) for out in self.outputs
        }
        self.load_error = None
        self.ready = True

    def start(self) -> None:
        """kserve's default marks every model ready here; readiness comes only from a verified load."""

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes (--workers > 1) get the model pickled; compiled predictors may be
        # closures and batchers hold event-loop handles, so each process builds its own.
        state = self.__dict__.copy()
        state["_batchers"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.artifact is not None:
            self._activate(self.artifact)

    # -- description -----------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The served version (metadata's version), None before a successful load.

        Returns:
            The version string, or None.
        """
        return self.artifact.version if self.artifact else None

    @property
    def batch_stats(self) -> dict[str, BatchStats]:
        """Per output: requests, rows and model calls so far (calls < requests when batching works).

        Returns:
            Output name (predict, predict_proba) -> its batcher's BatchStats.
        """
        return {out: batcher.stats for out, batcher in self._batchers.items()}

    @property
    def outputs(self) -> tuple[str, ...]:
        """The outputs this model answers: predict, and predict_proba for classifiers.

        Returns:
            Output names, default first.
        """
        if self.artifact and self.artifact.task == "classification":
            return (PREDICT, PREDICT_PROBA)
        return (PREDICT,)

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 metadata's inputs: one FP64 tensor [-1, n_features]; [] before load.

        Returns:
            Tensor descriptions (name, datatype, shape).
        """
        if self.spec is None:
            return []
        return [{"name": self.spec.name, "datatype": "FP64", "shape": [-1, self.spec.n_features]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 metadata's outputs; [] before load.

        predict is FP64 (regression) or the classes' datatype; classifiers add predict_proba [-1, n_classes].

        Returns:
            Tensor descriptions (name, datatype, shape).
        """
        if self.artifact is None:
            return []
        if self.artifact.task == "regression":
            return [{"name": PREDICT, "datatype": "FP64", "shape": [-1]}]
        classes = np.asarray(self.artifact.estimator.classes_)
        return [
            {"name": PREDICT, "datatype": v2.datatype_of(classes), "shape": [-1]},
            {"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]},
        ]

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata with the schema behind the tensors (feature names, ranges, target).

        Returns:
            The metadata dict (name, versions, platform, inputs, outputs, parameters).
        """
        inputs, outputs = self.get_input_types(), self.get_output_types()
        body: dict[str, Any] = {"name": self.name, "versions": [], "platform": PLATFORM,
                                "inputs": inputs, "outputs": outputs}
        if self.artifact is None:
            return body
        meta = self.artifact.metadata
        body["versions"] = [self.artifact.version]
        inputs[0]["parameters"] = {
            "feature_names": list(self.artifact.feature_names),
            "features": meta["schema"]["features"],
        }
        target = meta["schema"].get("target")
        if target:
            outputs[0]["parameters"] = {"target": target}
        body["parameters"] = {key: meta[key] for key in (
            "task", "estimator", "sklearn_version", "sha256", "created_at", "primary_metric",
            "metrics", "data_source", "run_id", "hyperparameters",
        ) if key in meta}
        return body

    # -- inference -------------------------------------------------------------------------

    def _require_ready(self) -> v2.InputSpec:
        if not self.ready or self.spec is None:
            raise ModelNotReady(self.name, self.load_error)
        return self.spec

    async def _results(self, request: v2.DecodedRequest) -> dict[str, np.ndarray]:
        """Rows in schema order -> each requested output, through the batcher (a direct call when it is off).

        Every V2 answer (REST, gRPC, kserve's route) goes through here or ``infer_grpc_together``; both
        hand it to ``_record``, so the inference log sees them all.
        """
        return self._record(request, {out: await self._batchers[out].predict(request.x) for out in request.outputs})

    def _record(self, request: v2.DecodedRequest, results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The answer, after handing it to the inference log when one is on (thread-safe: gRPC's threads call it)."""
        if self.inference_log is not None:
            self.inference_log.record(self.name, self.version, request.x, results)
        return results

    async def infer_json(self, body: bytes, header_length: str | None = None) -> tuple[bytes, int | None]:
        """A V2 REST request body -> the response body and, when it holds binary outputs, its JSON header's length.

        Args:
            body: the request body: JSON, or a JSON header followed by binary tensors.
            header_length: the request's Inference-Header-Content-Length (binary tensor extension), None without one.

        Returns:
            (response body, JSON header length or None); raises v2.InvalidRequest for a client mistake, ModelNotReady
            before load.
        """
        spec = self._require_ready()
        request = v2.decode_json_request(body, spec, self.outputs, DEFAULT_OUTPUTS, header_length)
        results = await self._results(request)
        return v2.encode_response(self.name, self.version, request.request_id, results, request.binary)

    async def infer_grpc(self, message: pb.ModelInferRequest) -> pb.ModelInferResponse:
        """gRPC ModelInfer, answered in the form it was asked: raw contents in, raw contents out.

        Args:
            message: the decoded ModelInferRequest.

        Returns:
            The ModelInferResponse; raises v2.InvalidRequest, ModelNotFound (another version), ModelNotReady.
        """
        request = self.decode_grpc(message)
        return self.encode_grpc(message, await self._results(request))

    def infer_grpc_together(self, messages: list[pb.ModelInferRequest]) -> list[pb.ModelInferResponse | Exception]:
        """Small ModelInfer requests that arrived together, computed now on the calling thread.

        Each output's rows go through one shared model call (``AdaptiveBatcher.predict_together``):
        gRPC's core loop collects the requests that came in while it computed the last ones, the
        way the batcher collects REST's between event-loop turns. Each answer has the form its
        request used, as ``infer_grpc``'s.

        Args:
            messages: the decoded ModelInferRequests.

        Returns:
            Per message, in order: its ModelInferResponse, or the exception refusing it (v2.InvalidRequest,
            ModelNotFound for another version, ModelNotReady) or failing it.
        """
        answers: list[pb.ModelInferResponse | Exception] = [None] * len(messages)  # type: ignore[list-item]
        decoded: list[tuple[int, v2.DecodedRequest]] = []
        for i, message in enumerate(messages):
            try:
                decoded.append((i, self.decode_grpc(message)))
            except Exception as exc:
                answers[i] = exc
        computed: dict[str, dict[int, np.ndarray | Exception]] = {}
        for out in self.outputs:
            wanting = [(i, request.x) for i, request in decoded if out in request.outputs]
            if wanting:
                values = self._batchers[out].predict_together([x for _, x in wanting])
                computed[out] = {i: result for (i, _), result in zip(wanting, values)}
        for i, request in decoded:
            results = {out: computed[out][i] for out in request.outputs}
            failed = next((r for r in results.values() if isinstance(r, Exception)), None)
            answers[i] = failed or self.encode_grpc(messages[i], self._record(request, results))
        return answers

    def decode_grpc(self, message: pb.ModelInferRequest) -> v2.DecodedRequest:
        """A ModelInferRequest checked (model ready, version served, tensors) and decoded.

        Args:
            message: the decoded ModelInferRequest.

        Returns:
            The DecodedRequest; raises v2.InvalidRequest, ModelNotFound (another version), ModelNotReady.
        """
        spec = self._require_ready()
        if message.model_version and message.model_version != self.version:
            raise ModelNotFound(f"{self.name} version {message.model_version} (serving version {self.version})")
        return v2.decode_grpc_request(message, spec, self.outputs, DEFAULT_OUTPUTS)

    def encode_grpc(self, message: pb.ModelInferRequest, results: dict[str, np.ndarray]) -> pb.ModelInferResponse:
        """The answer to ``message`` in the form it used: raw contents in, raw contents out; typed otherwise.

        Args:
            message: the request being answered (its id and input form).
            results: output name -> values, in the request's order.

        Returns:
            The ModelInferResponse.
        """
        response = pb.ModelInferResponse(model_name=self.name, model_version=self.version or "", id=message.id)
        raw = bool(message.raw_input_contents)
        for name, values in results.items():
            datatype = v2.datatype_of(values)
            tensor = response.outputs.add(name=name, datatype=datatype, shape=values.shape)
            if raw:
                response.raw_output_contents.append(v2.raw_bytes(values))
            elif datatype == "BYTES":
                tensor.contents.bytes_contents.extend(str(v).encode() for v in values.ravel())
            else:
                getattr(tensor.contents, v2.GRPC_CONTENTS[datatype]).extend(values.ravel().tolist())
        return response

    async def infer_v1(self, body: bytes) -> bytes:
        """V1 ``:predict``: {"instances": [row, ...]} (rows as lists or objects keyed by feature) -> predictions.

        Args:
            body: the request body (JSON).

        Returns:
            The JSON response body, {"predictions": [...]}; raises v2.InvalidRequest, ModelNotReady.
        """
        spec = self._require_ready()
        x = v2.decode_v1_request(body, spec)
        predictions = await self._batchers[PREDICT].predict(x)
        if self.inference_log is not None:
            self.inference_log.record(self.name, self.version, x, {PREDICT: predictions})
        return orjson.dumps({"predictions": v2.output_tensor(PREDICT, predictions)["data"]},
                            option=orjson.OPT_SERIALIZE_NUMPY)

    def config(self) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer and tritonclient's get_model_config read).

        Returns:
            The configuration dict; raises ModelNotReady before load.
        """
        self._require_ready()
        spec, outputs = self.spec, self.get_output_types()
        return {
            "name": self.name, "platform": PLATFORM, "backend": PLATFORM,
            "max_batch_size": self.batching.max_batch_rows,
            "input": [{"name": spec.name, "data_type": "TYPE_FP64", "format": "FORMAT_NONE", "dims": [spec.n_features]}],
            # Triton's way to say "one value per row": dims [1], reshaped to [] (shape [batch]).
            "output": [{"name": out["name"], "data_type": TRITON_TYPE[out["datatype"]],
                        "dims": [1] if len(out["shape"]) == 1 else out["shape"][1:],
                        **({"reshape": {"shape": []}} if len(out["shape"]) == 1 else {})}
                       for out in outputs],
        }

    async def predict(self, payload: InferRequest | dict, headers: dict[str, str] | None = None) -> Any:
        """kserve's own V2 REST handler (fast route off): an InferRequest; V1 goes to ``infer_v1``.

        Args:
            payload: kserve's InferRequest; anything else (a V1 body) is refused.
            headers: the request's headers (unused).

        Returns:
            The InferResponse; v2.InvalidRequest (a kserve InvalidInput: 400) for a client mistake, ModelNotReady.
        """
        spec = self._require_ready()
        if isinstance(payload, InferRequest):
            request = v2.decode_infer_request(payload, spec, self.outputs, DEFAULT_OUTPUTS)
            results = await self._results(request)
            return InferResponse(
                response_id=request.request_id or "", model_name=self.name, model_version=self.version,
                infer_outputs=[InferOutput(name, list(values.shape), v2.datatype_of(values), values.ravel().tolist())
                               for name, values in results.items()],
            )
        raise v2.InvalidRequest(f"expected a V2 request: POST /v2/models/{self.name}/infer")
