"""tritonclient's gRPC client, run in its own process by test_clients_integration.

tritonclient.grpc and kserve register the same protobuf names ("inference.*"), so they cannot be
imported in one process. Usage: python triton_grpc_client.py PORT MODEL ROWS.npy OUT.npz sync|aio OUTPUT...
Writes each output's as_numpy() and the model configuration's input dims into OUT.npz.
"""

import asyncio
import sys

import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio


def request(module, x: np.ndarray, outputs: list[str]):
    tensor = module.InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    return [tensor], [module.InferRequestedOutput(name) for name in outputs]


def sync(url: str, model: str, x: np.ndarray, outputs: list[str]) -> dict:
    client = triton.InferenceServerClient(url)
    try:
        config = client.get_model_config(model).config
        inputs, requested = request(triton, x, outputs)
        result = client.infer(model, inputs, outputs=requested)
        version = client.get_model_metadata(model).versions[0]
        versioned = client.infer(model, inputs, model_version=version).as_numpy("predict")
        try:
            client.infer(model, inputs, model_version="999")
            wrong_version = "answered"
        except triton.InferenceServerException as exc:
            wrong_version = f"{exc.status()} {exc.message()}"
        return {**{name: result.as_numpy(name) for name in outputs}, "dims": np.array(config.input[0].dims),
                "max_batch_size": np.array(config.max_batch_size), "versioned": versioned,
                "wrong_version": np.array(wrong_version)}
    finally:
        client.close()


async def aio(url: str, model: str, x: np.ndarray, outputs: list[str]) -> dict:
    client = triton_aio.InferenceServerClient(url)
    try:
        inputs, requested = request(triton_aio, x, outputs)
        result = await client.infer(model, inputs, outputs=requested)
        return {name: result.as_numpy(name) for name in outputs}
    finally:
        await client.close()


def main() -> None:
    port, model, rows, out, mode, *outputs = sys.argv[1:]
    url, x = f"127.0.0.1:{port}", np.load(rows)
    answers = sync(url, model, x, outputs) if mode == "sync" else asyncio.run(aio(url, model, x, outputs))
    np.savez(out, **answers)


if __name__ == "__main__":
    main()
