"""The adaptive batcher: real asyncio event loops, a real fitted forest behind it."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from serving.batching import AdaptiveBatcher, BatchingConfig, BatchingConfigError
from serving.engine import compile_predictor

LONG_WINDOW_MS = 1000.0  # long enough that any test relying on it would time out visibly


class RecordingModel:
    """The fitted forest's compiled predictor, noting the rows of every call it gets."""

    def __init__(self, predict, fail_on_negative_age: bool = False) -> None:
        self.predict = predict
        self.calls: list[int] = []
        self.fail_on_negative_age = fail_on_negative_age

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(x.shape[0])
        if self.fail_on_negative_age and (x[:, 0] < -1).any():
            raise ValueError("age below -1 is out of range")
        return self.predict(x)


@pytest.fixture(scope="module")
def forest(regressor):
    return compile_predictor(regressor, "predict")


@pytest.fixture
def model(forest) -> RecordingModel:
    return RecordingModel(forest)


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, (n, 10))


def run(coro):
    return asyncio.run(coro)


def test_lone_request_does_not_wait_for_the_window(model, forest):
    async def scenario():
        batcher = AdaptiveBatcher(model, BatchingConfig(max_latency_ms=LONG_WINDOW_MS))
        task = asyncio.ensure_future(batcher.predict(rows(1, 0)))
        for _ in range(3):  # a few event-loop turns, no clock time
            await asyncio.sleep(0)
        assert task.done()
        return task.result()

    np.testing.assert_array_equal(run(scenario()), forest(rows(1, 0)))
    assert model.calls == [1]


def test_concurrent_requests_share_one_call_and_get_their_own_rows(model, forest):
    inputs = [rows(n, seed) for seed, n in enumerate([1, 3, 1, 5, 2, 1, 4])]

    async def scenario():
        batcher = AdaptiveBatcher(model)
        return await asyncio.gather(*(batcher.predict(x) for x in inputs)), batcher.stats

    outputs, stats = run(scenario())
    assert model.calls == [17]
    for x, out in zip(inputs, outputs):
        assert np.array_equal(out, forest(x))  # bit for bit what the request gets alone
    assert (stats.requests, stats.rows, stats.batches, stats.largest_batch_rows) == (7, 17, 1, 17)


def test_batches_respect_max_rows_and_never_split_a_request(model, forest):
    inputs = [rows(3, seed) for seed in range(5)] + [rows(9, 99)]

    async def scenario():
        batcher = AdaptiveBatcher(model, BatchingConfig(max_batch_rows=7))
        return await asyncio.gather(*(batcher.predict(x) for x in inputs))

    outputs = run(scenario())
    assert model.calls == [6, 6, 3, 9]  # 3+3, 3+3, 3 (the next would pass 7), 9 alone
    for x, out in zip(inputs, outputs):
        assert np.array_equal(out, forest(x))


def test_one_failing_request_does_not_fail_the_others(forest):
    model = RecordingModel(forest, fail_on_negative_age=True)
    good = [rows(2, seed) for seed in range(3)]
    bad = rows(1, 7)
    bad[0, 0] = -5.0

    async def scenario():
        batcher = AdaptiveBatcher(model)
        results = await asyncio.gather(*(batcher.predict(x) for x in [good[0], bad, good[1], good[2]]),
                                       return_exceptions=True)
        return results, batcher.stats

    results, stats = run(scenario())
    assert isinstance(results[1], ValueError) and "age below -1" in str(results[1])
    for x, out in zip(good, [results[0], results[2], results[3]]):
        assert np.array_equal(out, forest(x))
    assert model.calls == [7, 2, 1, 2, 2]  # the batch, then each request alone
    assert stats.retried_alone == 4


def test_wrong_row_count_from_the_model_falls_back_to_single_calls(forest):
    def first_row_only_when_batched(x):
        out = forest(x)
        return out[:1] if len(x) > 2 else out

    inputs = [rows(2, 1), rows(2, 2)]

    async def scenario():
        batcher = AdaptiveBatcher(first_row_only_when_batched)
        return await asyncio.gather(*(batcher.predict(x) for x in inputs))

    for x, out in zip(inputs, run(scenario())):
        assert np.array_equal(out, forest(x))


@pytest.mark.parametrize("bad,message", [
    (np.zeros(10), r"shape \(10,\)"),
    (np.zeros((0, 10)), r"shape \(0, 10\)"),
    (np.zeros((2, 10, 1)), r"shape \(2, 10, 1\)"),
])
def test_malformed_request_is_rejected_alone(model, forest, bad, message):
    async def scenario():
        batcher = AdaptiveBatcher(model)
        return await asyncio.gather(batcher.predict(rows(1, 1)), batcher.predict(bad), batcher.predict(rows(1, 2)),
                                    return_exceptions=True)

    first, error, second = run(scenario())
    assert isinstance(error, ValueError)
    assert re.search(message, str(error)), str(error)
    assert np.array_equal(first, forest(rows(1, 1))) and np.array_equal(second, forest(rows(1, 2)))
    assert model.calls == [2]


def test_requests_differing_in_dtype_or_width_are_not_mixed():
    calls = []

    def widths_and_dtypes(x):
        calls.append((x.shape[1], x.dtype))
        return x.sum(axis=1)

    inputs = [rows(1, 1), rows(2, 2).astype(np.float32), rows(1, 3)[:, :4], rows(3, 4)]

    async def scenario():
        batcher = AdaptiveBatcher(widths_and_dtypes)
        return await asyncio.gather(*(batcher.predict(x) for x in inputs))

    outputs = run(scenario())
    assert sorted(calls, key=str) == sorted([(10, np.float64), (10, np.float32), (4, np.float64)], key=str)
    for x, out in zip(inputs, outputs):
        assert out.dtype == x.dtype and np.array_equal(out, x.sum(axis=1))


def test_after_a_concurrent_batch_the_window_gathers_stragglers(model):
    async def scenario():
        batcher = AdaptiveBatcher(model, BatchingConfig(max_latency_ms=50))
        await asyncio.gather(*(batcher.predict(rows(1, seed)) for seed in range(3)))  # learns: 3 at a time
        first = asyncio.ensure_future(batcher.predict(rows(1, 10)))
        await asyncio.sleep(0.005)  # a straggler arrives well inside the window
        second = asyncio.ensure_future(batcher.predict(rows(1, 11)))
        await asyncio.gather(first, second)

    run(scenario())
    assert model.calls == [3, 2]


def test_the_usual_number_of_requests_flushes_before_the_window(model):
    async def scenario():
        batcher = AdaptiveBatcher(model, BatchingConfig(max_latency_ms=LONG_WINDOW_MS))
        await asyncio.gather(*(batcher.predict(rows(1, seed)) for seed in range(2)))
        first = asyncio.ensure_future(batcher.predict(rows(1, 10)))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.predict(rows(1, 11)))
        # Both companions are here: this must not wait the 1 s window.
        await asyncio.wait_for(asyncio.gather(first, second), timeout=LONG_WINDOW_MS / 2000)

    run(scenario())
    assert model.calls == [2, 2]


def test_cancelled_caller_does_not_break_the_batch(model, forest):
    async def scenario():
        batcher = AdaptiveBatcher(model)
        gone = asyncio.ensure_future(batcher.predict(rows(1, 1)))
        kept = asyncio.ensure_future(batcher.predict(rows(2, 2)))
        await asyncio.sleep(0)  # both queued
        gone.cancel()
        return await kept

    assert np.array_equal(run(scenario()), forest(rows(2, 2)))
    assert model.calls == [2]


def test_switched_off_every_request_is_its_own_call(model, forest):
    inputs = [rows(1, seed) for seed in range(4)]

    async def scenario():
        batcher = AdaptiveBatcher(model, BatchingConfig(enabled=False))
        return await asyncio.gather(*(batcher.predict(x) for x in inputs))

    for x, out in zip(inputs, run(scenario())):
        assert np.array_equal(out, forest(x))
    assert model.calls == [1, 1, 1, 1]


@pytest.mark.parametrize("kwargs,message", [
    ({"max_batch_rows": 0}, r"max_batch_rows=0 is invalid: expected an integer >= 1"),
    ({"max_batch_rows": True}, r"max_batch_rows=True is invalid"),
    ({"max_latency_ms": 5000}, r"max_latency_ms=5000 is invalid: expected a number of milliseconds in \[0, 1000\]"),
])
def test_bad_config_values_in_code(kwargs, message):
    with pytest.raises(BatchingConfigError, match=message):
        BatchingConfig(**kwargs)


def test_requests_answered_together_share_calls_by_width_and_dtype_and_fail_alone(forest):
    """predict_together (gRPC's core loop): the batcher's isolation, without an event loop."""
    model = RecordingModel(forest, fail_on_negative_age=True)
    batcher = AdaptiveBatcher(model)
    bad = rows(1, 3)
    bad[0, 0] = -5
    xs = [rows(2, 1), rows(3, 2), bad, rows(1, 4).astype(np.float32), np.zeros(10)]
    results = batcher.predict_together(xs)
    for x, result in zip(xs[:2] + xs[3:4], results[:2] + results[3:4]):
        np.testing.assert_array_equal(result, forest(x))
    assert isinstance(results[2], ValueError) and "age below" in str(results[2])
    assert isinstance(results[4], ValueError) and "2-D" in str(results[4])  # refused before any call
    # float64 rows: one shared call (6 rows) that raised, then each alone; float32 alone
    assert sorted(model.calls) == sorted([6, 2, 3, 1, 1])
    assert (batcher.stats.requests, batcher.stats.retried_alone) == (4, 3)


def test_answered_together_with_batching_off_each_is_its_own_call(model, forest):
    batcher = AdaptiveBatcher(model, BatchingConfig(enabled=False))
    xs = [rows(2, 1), rows(3, 2)]
    for x, result in zip(xs, batcher.predict_together(xs)):
        np.testing.assert_array_equal(result, forest(x))
    assert model.calls == [2, 3]


def test_answered_together_at_most_max_batch_rows_per_call_never_splitting_a_request(model, forest):
    batcher = AdaptiveBatcher(model, BatchingConfig(max_batch_rows=5))
    xs = [rows(2, 1), rows(3, 2), rows(4, 3), rows(7, 4), rows(1, 5)]
    for x, result in zip(xs, batcher.predict_together(xs)):
        np.testing.assert_array_equal(result, forest(x))
    assert model.calls == [5, 4, 7, 1]
