"""serving/offload.py: a shutdown that lands while a pool starts leaves no pool (and no semaphore) behind."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future

import pytest

from serving import offload
from serving.model import SklearnModel


class FakePool:
    """ProcessPoolExecutor's surface that Offloader uses; building one can be held up."""

    built: list[FakePool] = []
    hold: threading.Event | None = None
    building = threading.Event()

    def __init__(self, *args, **kwargs) -> None:
        FakePool.building.set()
        if FakePool.hold is not None:
            FakePool.hold.wait(10)
        self.shut = False
        self._processes = {}
        self._futures: list[Future] = []
        FakePool.built.append(self)

    def submit(self, function, *args) -> Future:
        if self.shut:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future = Future()
        if FakePool.hold is None:
            future.set_result(True)  # the pool "started"
        else:
            self._futures.append(future)  # held: only the shutdown ends it
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.shut = True
        for future in self._futures:
            future.cancel()


@pytest.fixture
def model(regressor_dir) -> SklearnModel:
    served = SklearnModel("diabetes-rf", regressor_dir)
    assert served.load()
    return served


@pytest.fixture(autouse=True)
def fake_pool(monkeypatch):
    FakePool.built, FakePool.hold = [], None
    FakePool.building.clear()
    monkeypatch.setattr(offload, "ProcessPoolExecutor", FakePool)


def test_no_pool_is_built_after_shutdown(model) -> None:
    pooling = offload.Offloader(min_bytes=1, processes=1)
    pooling.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pooling._start_pool(model)
    assert FakePool.built == []


def test_a_shutdown_while_a_pool_is_built_waits_for_it_and_shuts_it_down(model) -> None:
    pooling = offload.Offloader(min_bytes=1, processes=1)
    FakePool.hold = threading.Event()
    failed: list[BaseException] = []

    def start() -> None:
        try:
            pooling._start_pool(model)
        except BaseException as exc:  # noqa: BLE001 (the thread's outcome, checked below)
            failed.append(exc)

    starter = threading.Thread(target=start, daemon=True)  # a broken shutdown would leave it waiting
    starter.start()
    assert FakePool.building.wait(10)
    stopper = threading.Thread(target=pooling.shutdown, daemon=True)
    stopper.start()
    stopper.join(0.2)
    waited = stopper.is_alive()
    FakePool.hold.set()
    assert waited  # it waits for the pool being built ...
    stopper.join(10)
    starter.join(10)
    assert [pool.shut for pool in FakePool.built] == [True]  # ... and then stops it
    # The start gives up: its submit came after the shutdown (refused) or before it (cancelled).
    assert len(failed) == 1 and isinstance(failed[0], (RuntimeError, CancelledError)), failed
