"""The gRPC ceiling of the serving benchmark: grpcio's threaded server answering a constant.

    python bench/servers/grpc_constant.py --http_port P --grpc_port G [--threads 4]

ModelInfer takes the request bytes and answers one fixed, pre-serialized ModelInferResponse (a
1-row FP64 ``predict`` as raw contents) without decoding anything: what grpcio itself costs per
call, the same thread pool size as the V2 server's default. Beside it, a plain HTTP thread answers
the benchmark's readiness probe. Loopback only.
"""

from __future__ import annotations

import argparse
import http.server
import struct
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from contract.files import DEFAULT_MODEL_NAME  # noqa: E402 (after the sys.path line)

LOOPBACK = "127.0.0.1"
ANSWER = pb.ModelInferResponse(
    model_name=DEFAULT_MODEL_NAME, model_version="1",
    outputs=[pb.ModelInferResponse.InferOutputTensor(name="predict", datatype="FP64", shape=[1])],
    raw_output_contents=[struct.pack("<d", 150.0)],
).SerializeToString()


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:  # no line per probe
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(lambda request, context: ANSWER),  # bytes in, bytes out
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads), handlers=(handler,))
    server.add_insecure_port(f"{LOOPBACK}:{args.grpc_port}")
    server.start()
    probe = http.server.ThreadingHTTPServer((LOOPBACK, args.http_port), Ready)
    threading.Thread(target=probe.serve_forever, daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
