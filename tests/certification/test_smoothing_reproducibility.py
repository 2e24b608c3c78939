"""Counts depend only on (seed, example index, phase): not on batch size, threads, order or sharding."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from certification.smoothing import SmoothedClassifier
from certification.noise_sampling import NoiseJob, NoiseStream, NoisyCounter
from support.oracle import conv_onnx, linear_onnx

CHW = (3, 8, 8)
N0, N = 30, 700


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory):
    return conv_onnx(tmp_path_factory.mktemp("cnn") / "cnn.onnx", CHW, num_classes=4, seed=5)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).random((6, *CHW), dtype=np.float32)


def _counts(results) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    return [(r.index, tuple(r.counts_selection), tuple(r.counts_estimation)) for r in results]


@pytest.fixture(scope="module")
def reference(model_path, images):
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=1000, threads=1)
    return classifier.certify_many(images, None, N0, N, 0.01, seed=42)


def test_counts_vary_so_the_comparison_means_something(reference) -> None:
    spread = [sum(1 for c in r.counts_estimation if c > 0) for r in reference]
    assert max(spread) >= 2, "the test model must not be constant under noise"


@pytest.mark.parametrize("batch_size,threads", [(1, 1), (7, 2), (1000, 2), (256, 1)])
def test_identical_counts_across_batch_sizes_and_threads(model_path, images, reference, batch_size, threads) -> None:
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=batch_size, threads=threads)
    results = classifier.certify_many(images, None, N0, N, 0.01, seed=42)
    assert _counts(results) == _counts(reference)
    assert [r.radius for r in results] == [r.radius for r in reference]


@pytest.mark.parametrize("noise_threads,batch_size", [(2, 50), (3, 7), (4, 1000)])
def test_identical_counts_for_any_number_of_noise_threads(model_path, images, reference, noise_threads, batch_size) -> None:
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=batch_size, threads=1, noise_threads=noise_threads)
    assert classifier.noise_threads == noise_threads
    assert _counts(classifier.certify_many(images, None, N0, N, 0.01, seed=42)) == _counts(reference)


def test_skip_moves_the_stream_ahead_by_whole_images() -> None:
    whole = NoiseStream(3, 1, 1, (3, 5, 7), 0.25).sample(12)
    for start in (0, 1, 5, 11):
        np.testing.assert_array_equal(NoiseStream(3, 1, 1, (3, 5, 7), 0.25).skip(start).sample(12 - start), whole[start:])


def test_identical_counts_without_prefetch_thread(model_path, images, reference) -> None:
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=33, threads=1)
    classifier.prefetch = 0
    assert _counts(classifier.certify_many(images, None, N0, N, 0.01, seed=42)) == _counts(reference)


def test_identical_counts_for_shuffled_order_and_shards(model_path, images, reference) -> None:
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=64, threads=1)
    order = np.random.default_rng(3).permutation(len(images))
    shuffled = classifier.certify_many(images[order], None, N0, N, 0.01, seed=42, indices=order)
    assert sorted(_counts(shuffled)) == _counts(reference)
    shards = [np.array([0, 3]), np.array([1, 2, 5]), np.array([4])]
    merged = []
    for shard in shards:
        merged += classifier.certify_many(images[shard], None, N0, N, 0.01, seed=42, indices=shard)
    assert sorted(_counts(merged)) == _counts(reference)


def test_different_seed_or_index_gives_different_noise(model_path, images, reference) -> None:
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=1000, threads=1)
    other_seed = classifier.certify_many(images, None, N0, N, 0.01, seed=43)
    assert _counts(other_seed) != _counts(reference)
    shifted = classifier.certify(images[0], N0, N, 0.01, seed=42, index=1)
    assert shifted.counts_estimation != reference[0].counts_estimation


@pytest.mark.parametrize("chw", [CHW, (3, 5, 7), (1, 1, 1)])
def test_noise_stream_is_invariant_to_chunking(chw) -> None:
    """Any split of a stream into calls gives the same images, also for odd C*H*W (last sine dropped)."""
    whole = NoiseStream(9, 4, 1, chw, 0.5).sample(25)
    for chunk in (1, 3, 7, 25):
        stream = NoiseStream(9, 4, 1, chw, 0.5)
        parts = np.concatenate([stream.sample(min(chunk, 25 - start)) for start in range(0, 25, chunk)])
        np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("sigma", [0.3, 0.1])
def test_noisy_counter_adds_the_stream_to_x(sigma: float) -> None:
    """The batches the model sees are exactly x + e (float32), e the (seed, index, phase) noise stream of sigma
    as given (for 0.1, rounding sigma to float32 before forming -2 sigma^2 would move it by one float32 step)."""
    if sigma == 0.1:
        assert np.float32(-2.0 * sigma**2) != np.float32(-2.0 * float(np.float32(sigma)) ** 2)
    seen: list[np.ndarray] = []

    def record(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return np.zeros(len(batch), dtype=np.int64)

    x = np.full(CHW, 0.5, dtype=np.float32)
    counter = NoisyCounter(record, 2, sigma, batch_size=4, chw=CHW)
    (counts,) = list(counter.count([NoiseJob(x, 5, 2, 1, 10)]))
    assert counts.tolist() == [10, 0] and [len(b) for b in seen] == [4, 4, 2]
    expected = NoiseStream(5, 2, 1, CHW, sigma).sample(10) + x
    np.testing.assert_array_equal(np.concatenate(seen), expected)
    assert sigma < 0.3 or (expected.min() < 0.0 and expected.max() > 1.0)  # unclipped


def test_phases_and_indices_are_independent_streams() -> None:
    a = NoiseStream(1, 0, 0, CHW, 1.0).sample(20).ravel()
    b = NoiseStream(1, 0, 1, CHW, 1.0).sample(20).ravel()
    c = NoiseStream(1, 1, 0, CHW, 1.0).sample(20).ravel()
    d = NoiseStream(2, 0, 0, CHW, 1.0).sample(20).ravel()
    bound = 4 / np.sqrt(a.size)  # four standard errors of a correlation between independent samples
    for other in (b, c, d):
        assert abs(np.corrcoef(a, other)[0, 1]) < bound


def test_memory_does_not_grow_with_n(tmp_path) -> None:
    chw = (3, 32, 32)
    path = linear_onnx(tmp_path / "lin.onnx", np.full(chw, 0.01), 0.0, chw)
    classifier = SmoothedClassifier.from_onnx(path, 0.25, batch_size=200, threads=1)
    x = np.full(chw, 0.5, dtype=np.float32)
    peaks = []
    for n in (2_000, 40_000):
        tracemalloc.start()
        classifier.certify(x, 10, n, 0.01, seed=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    buffer = 200 * 3 * 32 * 32 * 4
    assert peaks[1] <= peaks[0] + buffer, peaks
    assert peaks[1] < 8 * buffer, peaks


def test_a_failing_model_call_propagates_and_stops_the_producer() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("model failed")

    counter = NoisyCounter(broken, 2, 0.1, batch_size=2, chw=CHW)
    with pytest.raises(RuntimeError, match="model failed"):
        list(counter.count(NoiseJob(np.zeros(CHW, np.float32), 0, i, 0, 50) for i in range(100)))


@pytest.mark.parametrize("fail_in", ["model", "noise"])
def test_a_failure_in_the_model_or_a_noise_thread_reaches_the_caller(fail_in) -> None:
    """The error surfaces in the calling thread, and the noise threads stop (no hang, no stray thread)."""
    import threading

    calls = []

    def classify(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if fail_in == "model" and len(calls) == 3:
            raise RuntimeError("model failed")
        return np.zeros(len(batch), dtype=np.int64)

    counter = NoisyCounter(classify, 2, 0.3, batch_size=4, chw=CHW, prefetch=2, workers=2)
    x = np.full(CHW, 0.5, dtype=np.float32)
    jobs = [NoiseJob(x, 1, i, 1, 20) for i in range(5)]
    if fail_in == "noise":
        jobs[2] = NoiseJob(np.zeros((2, 2), dtype=np.float32), 1, 2, 1, 20)  # wrong image shape: the fill fails
    before = threading.active_count()
    with pytest.raises((RuntimeError, ValueError)):
        list(counter.count(jobs))
    assert threading.active_count() == before


@pytest.mark.parametrize("cores,inference,noise", [(1, 1, 1), (2, 1, 1), (3, 2, 1), (16, 8, 8)])
def test_default_threads_split_the_cores_between_inference_and_noise(model_path, monkeypatch, cores, inference, noise) -> None:
    """By default onnxruntime gets half the usable cores (rounded up) and the noise threads the rest, at least one."""
    import certification.smoothing as smoothing

    monkeypatch.setattr(smoothing, "default_threads", lambda: cores)
    classifier = SmoothedClassifier.from_onnx(model_path, 0.25, batch_size=100)
    assert (classifier.base_classifier.session_config["intra_op_num_threads"], classifier.noise_threads) == (inference, noise)
