"""kserve's ModelServer with three changes: a bind host, honest readiness, and our V2 routes.

- Host: kserve binds HTTP to 0.0.0.0 and gRPC to [::] with no option. The cluster keeps
  that; locally we bind 127.0.0.1 so nothing is exposed beyond the machine.
- Readiness: kserve's server-ready is always true and its ``start`` marks every model ready.
  Here a model that failed its checks stays not ready, and so does the server, so
  Kubernetes never routes traffic to it; the log says why.
- Routes: ``serving.routes`` goes on the app before kserve registers its own, in every
  worker process (the RESTServer below is what kserve pickles into each worker).
- Stopping: SIGTERM/SIGINT/SIGQUIT are handled on the running event loop, once, and the gRPC
  server is never stopped while it is still starting. kserve installs plain ``signal.signal``
  handlers and stops gRPC whenever the signal lands; with ``--workers 2`` the parent blocks
  for seconds spawning workers before gRPC starts, so a signal in that window made grpcio
  crash the parent (SIGSEGV) and left the workers serving as orphans.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from concurrent import futures
from typing import Any

import kserve
from kserve import model_server
from fastapi import FastAPI
from fastapi.responses import JSONResponse
import grpc
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model import BaseKServeModel
from kserve.protocol import dataplane
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.rest import server as rest_server
from starlette.types import ASGIApp
from uvicorn.importer import import_from_string

from serving import grpc_core, inference_log, openapi, routes
from serving.grpc_service import BATCHED_METHOD, GRPC_SERVICE, MESSAGES, Servicer
from serving.limits import Admission, DrainState, DrainingServer, Limits, protocol_for
from serving.model import SklearnModel
from serving.offload import Offloader
from serving.workers import WorkerProcesses

log = logging.getLogger(__name__)

CLUSTER_HOST = "0.0.0.0"
LOCAL_HOST = "127.0.0.1"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)  # kserve's set
TRACE_LOGGER = "kserve.trace"  # kserve's per-request latency lines (SERVING_ACCESS_LOG=1)


EXTENSIONS = ("binary_tensor_data", "model_configuration")  # beyond kserve's model_repository


class DataPlane(dataplane.DataPlane):
    def metadata(self) -> dict[str, Any]:
        """Server metadata whose ``extensions`` name what this server answers.

        Returns:
            The V2 server metadata dict (name, version, extensions).
        """
        body = super().metadata()
        body["extensions"] = [*body.get("extensions", []), *EXTENSIONS]
        return body

    async def ready(self) -> bool:
        """Ready only when every registered model is (kserve: always, once the process runs).

        Returns:
            True when the server and every registered model are ready.
        """
        names = list(self.model_registry.get_models())
        return await super().ready() and all([await self.model_registry.is_model_ready(n) for n in names])


class UvicornServer(DrainingServer, rest_server._RefreshingServer):
    """Drains on the first stop signal (serving.limits); kserve's refreshes its TLS certificates."""


class RESTServer(rest_server.RESTServer):
    def __init__(self, *args: Any, host: str, limits: Limits, fast_route: bool = True,
                 offload: tuple[int, int] = (0, 1), **kwargs: Any) -> None:
        super().__init__(FASTAPI_APP_IMPORT_STRING, *args, **kwargs)
        self.config.host = host
        self.limits = limits
        self.max_body_bytes = limits.max_body_bytes
        self.fast_route = fast_route
        self.offload_settings = offload
        self.offload: Offloader | None = None
        # The header and body deadlines, the idle timeout and the drain: uvicorn's own settings
        # time idle connections only (kserve passes --timeout_keep_alive, an int, to the same place).
        self.drain = DrainState()
        self._finished = False
        self.config.http = protocol_for(limits, self.drain)
        self.config.timeout_keep_alive = limits.idle_timeout_s
        self.config.timeout_graceful_shutdown = limits.grace_s
        self._server = UvicornServer(self.config, limits, self.drain)

    def create_application(self) -> None:
        # Runs in each process that serves (workers included), just before uvicorn loads the app.
        self.config.app = self.configure(import_from_string(FASTAPI_APP_IMPORT_STRING))

    @property
    def serving(self) -> bool:
        """Uvicorn is up in this process and has not finished its shutdown.

        Returns:
            True while uvicorn serves.
        """
        return self._server.started and not self._finished

    async def start(self) -> None:
        self._finished = False
        try:
            await super().start()
        finally:
            self._finished = True
            self.stop_offload()

    def run(self, sockets: list | None = None) -> None:
        """Serve HTTP until stopped; then stop the offload helper and flush the inference log.

        Args:
            sockets: listening sockets the parent opened (None: uvicorn binds its own).
        """
        # A --workers process: its own inference log writer flushes once it has stopped serving.
        try:
            super().run(sockets)
        finally:
            self.stop_offload()
            inference_log.close_all()

    def stop_offload(self) -> None:
        if self.offload is not None:
            self.offload.shutdown()

    def configure(self, app: FastAPI) -> ASGIApp:
        """Our routes first, then kserve's middleware, routes and error handlers, as kserve does.

        Args:
            app: kserve's FastAPI app.

        Returns:
            The ASGI app to serve: with the fast route, inference bypasses the FastAPI app.
        """
        # kserve makes the deprecated ORJSONResponse the app default, and FastAPI then warns on
        # every response; routes registered after this line use the plain JSONResponse.
        app.router.default_response_class = JSONResponse
        min_bytes, processes = self.offload_settings
        self.offload = Offloader(min_bytes, processes) if min_bytes else None
        for model in self.dataplane.model_registry.get_models().values():
            if self.offload is not None and isinstance(model, SklearnModel):
                self.offload.warm(model)
        served = routes.register(app, self.dataplane, self.max_body_bytes, self.fast_route, self.offload)
        # kserve's middleware times every request for its latency trace (kserve.trace) and adds
        # the --access_log_format log; when neither is on, it only costs time.
        if self.access_log_format or logging.getLogger(TRACE_LOGGER).isEnabledFor(logging.INFO):
            self._add_middlewares(app)
        self._register_endpoints(app)
        self._add_exception_handlers(app)
        routes.quiet_client_errors(app)
        openapi.install(app, self.fast_route)
        return Admission(served, self.limits.max_concurrency, self.drain)


class GRPCServer(grpc_server.GRPCServer):
    """gRPC (see serving.grpc_service) on a chosen host, without per-request logs.

    On serving.grpc_core's loop when ``core`` and grpc_core is available, else on grpcio's public
    threaded server. Start and stop are serialised: a stop that comes while the server starts
    waits for it, and one that comes first means it never starts.
    """

    def __init__(self, *args: Any, host: str, core: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listen_addr = f"[::]:{self._port}" if host == CLUSTER_HOST else f"{host}:{self._port}"
        self.core = core and grpc_core.available()
        self._lifecycle = asyncio.Lock()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def start(self, max_workers: int) -> None:
        """Start the gRPC server (our servicer, no interceptors) and wait until it is stopped.

        Returns at once when a stop came first.

        Args:
            max_workers: threads answering the calls not answered on the core loop (all of them on grpcio's server).
        """
        async with self._lifecycle:
            if self._stopping:
                return
            servicer = Servicer(self._data_plane, self._model_repository_extension, asyncio.get_running_loop())
            pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
            options = [
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ]
            if self.core:
                self._server = grpc_core.CoreServer(
                    GRPC_SERVICE, MESSAGES, servicer.answer, BATCHED_METHOD, servicer.answer_together, pool, options)
            else:  # no interceptors (kserve adds two): see serving.grpc_service
                self._server = grpc.server(pool, handlers=(servicer.handler(),), options=options)
            self._server.add_insecure_port(self.listen_addr)
            log.info("gRPC listening", extra={"address": self.listen_addr,
                                              "server": "grpc_core" if self.core else "grpcio"})
            self._server.start()
        await self._stopped.wait()

    async def stop(self, sig: int | None = None) -> None:
        """Stop accepting calls, finish those in flight within the grace period, then release start().

        Args:
            sig: the signal that asked for the stop (unused; kserve passes it).
        """
        async with self._lifecycle:
            self._stopping = True
            if self._server is not None:
                # The calls in flight may need the event loop (large requests, readiness): wait off it.
                await asyncio.to_thread(self._server.stop(grace=self._grace_period).wait)
            self._stopped.set()


class ModelServer(kserve.ModelServer):
    def __init__(
        self,
        host: str = CLUSTER_HOST,
        limits: Limits | None = None,
        fast_route: bool = True,
        offload: tuple[int, int] = (0, 1),
        grpc_on_core: bool = True,
        log_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.limits = limits or Limits()
        # kserve's grace period bounds gRPC's stop and the --workers parent's wait for its workers.
        super().__init__(grace_period=math.ceil(self.limits.grace_s), **kwargs)
        self.host = host
        self.fast_route = fast_route
        self.offload = offload
        self.grpc_on_core = grpc_on_core  # False: grpcio's public threaded server (SERVING_GRPC_CORE=0)
        self.log_config = log_config
        self.dataplane = DataPlane(model_registry=self.registered_models)
        self._stopping = False

    def start(self, models: list[BaseKServeModel]) -> None:
        """kserve's start, except that a model is registered (not ready) even when its load failed.

        Args:
            models: the models to serve (their load already tried).
        """
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging
            model.start()
        rest = RESTServer(
            self.dataplane, self.model_repository_extension, self.http_port,
            host=self.host, limits=self.limits, fast_route=self.fast_route, offload=self.offload,
            access_log_format=self.access_log_format, workers=self.workers, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
        )
        if self.workers > 1:
            self._rest_multiprocess_server = WorkerProcesses(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
                workers=self.workers, grace_period=self.grace_period, log_config_file=self.log_config,
            )
            # kserve builds its own RESTServer inside; each worker must run ours.
            self._rest_multiprocess_server._rest_server = rest
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = rest
            self.servers.append(rest.start())
        if self.enable_grpc:
            self._grpc_server = GRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs=vars(model_server.args), grace_period=self.grace_period, host=self.host,
                core=self.grpc_on_core,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        log.info("HTTP listening", extra={"address": f"{self.host}:{self.http_port}", "workers": self.workers})
        try:
            asyncio.run(self._serve())
        finally:  # REST (one process) and gRPC have drained: what they sampled is flushed
            inference_log.close_all()

    async def _serve(self) -> None:
        # kserve configures asyncio.get_event_loop() before asyncio.run, which makes a new loop.
        self.setup_event_loop()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            # On the loop, not signal.signal: the stop then runs between callbacks, never inside one.
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        await asyncio.gather(*self.servers)

    def _on_stop_signal(self, sig: int) -> None:
        # Once: uvicorn (one worker) re-raises the signal it caught after its own shutdown.
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping", extra={"signal": signal.Signals(sig).name, "workers": self.workers})
        self.stop(sig)

    def stop(self, sig: int) -> None:
        """Drain, then stop: kserve's stop unloads the models at once, so requests still in flight failed.

        HTTP drains by itself (``serving.limits.DrainingServer``: in this process with one worker,
        where uvicorn sees the signal too, else in each worker the parent signals). gRPC keeps
        serving for the drain delay, then refuses new calls and finishes those in flight. The
        models are unloaded only when both are done.

        Args:
            sig: the signal received (SIGTERM, SIGINT).
        """
        asyncio.create_task(self._drain_and_stop(sig))

    async def _drain_and_stop(self, sig: int) -> None:
        if self._rest_multiprocess_server:
            await self._rest_multiprocess_server.stop(sig)  # the parent signals its workers, which drain
        grpc_stopped = asyncio.ensure_future(self._stop_grpc_after_delay(sig))
        rest = self._rest_server
        if isinstance(rest, RESTServer) and rest.serving:
            rest.drain.begin(self.limits.drain_delay_for(sig))  # uvicorn's own handler has usually begun it
            while rest.serving:
                await asyncio.sleep(0.05)
        await grpc_stopped
        for model_name in list(self.registered_models.get_models()):
            self.registered_models.unload(model_name)

    async def _stop_grpc_after_delay(self, sig: int) -> None:
        if self._grpc_server:
            await asyncio.sleep(self.limits.drain_delay_for(sig))
            await self._grpc_server.stop(sig)
