"""SAMPLE-UNDER-NOISE, streamed: class counts of the base classifier on x + N(0, sigma^2 I).

Noise for one draw set is a deterministic function of (seed, example index, phase, draw number): the
generator is numpy's PCG64 seeded from ``SeedSequence([seed, index, phase])`` and the draws are taken in order,
``standard_normal(dtype=float32)`` (ziggurat), one image of C*H*W values after the other. Cutting that one
sequence into batches changes nothing, so counts are identical for every batch size, thread count, order of
examples and split of the work across machines. Different (index, phase) pairs get statistically independent
streams (SeedSequence's guarantee), so selection and estimation samples are independent and no noise is shared
between examples (the dataset-level bound relies on that).

The noisy images are x + sigma * z in float32, in [0, 1]-pixel space, NOT clipped to [0, 1]: clipping would
change the smoothing distribution and void the guarantee.

Memory does not grow with the number of samples: a background thread fills a small ring of preallocated
(batch, C, H, W) buffers while the main thread runs inference on the previous one (numpy's generator and
onnxruntime both release the GIL), and counts are accumulated with ``np.bincount``.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

PHASE_SELECTION = 0
PHASE_ESTIMATION = 1
PHASE_PREDICT = 2

#: Recorded in outputs so an auditor can regenerate every noise draw.
NOISE_SPEC = "gaussian N(0, sigma^2 I), unclipped, float32; numpy PCG64 seeded by SeedSequence([seed, index, phase]); phases 0=selection 1=estimation 2=predict"


def noise_generator(seed: int, index: int, phase: int) -> np.random.Generator:
    """The generator of the noise draws for example ``index`` in ``phase`` (0 selection, 1 estimation, 2 predict)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index), int(phase)])))


@dataclass(frozen=True)
class NoiseJob:
    """``num`` noisy copies of one image ``x`` (float32 C,H,W), drawn from the stream (seed, index, phase)."""

    x: np.ndarray
    seed: int
    index: int
    phase: int
    num: int


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


class NoisyCounter:
    """Counts base-classifier labels on noisy copies of images, streamed in batches of ``batch_size``.

    ``prefetch`` batches are drawn ahead on a background thread while the model runs (0: draw and classify in
    turn on the calling thread). Counts do not depend on it.
    """

    def __init__(
        self,
        classify: Callable[[np.ndarray], np.ndarray],
        num_classes: int,
        sigma: float,
        batch_size: int,
        chw: tuple[int, int, int],
        prefetch: int = 2,
    ) -> None:
        self.classify = classify
        self.num_classes = int(num_classes)
        self.sigma = np.float32(sigma)
        self.batch_size = int(batch_size)
        self.chw = tuple(int(d) for d in chw)
        self.prefetch = max(0, int(prefetch))

    def count(self, jobs: Iterable[NoiseJob]) -> Iterator[np.ndarray]:
        """Yield, for each job in order, the int64 array (K,) of label counts over its ``num`` noisy copies."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for batch, last in self._batches_in_order(jobs):
            if batch is not None:
                labels = self.classify(batch)
                counts += np.bincount(labels, minlength=self.num_classes)[: self.num_classes]
            if last:
                yield counts
                counts = np.zeros(self.num_classes, dtype=np.int64)

    def _noisy_batches(self, jobs: Iterable[NoiseJob], buffers: list[np.ndarray]) -> Iterator[tuple[np.ndarray | None, bool]]:
        """(x + sigma * z for the next batch of draws, whether it ends its job), cycling through ``buffers``."""
        slot = 0
        for job in jobs:
            generator = noise_generator(job.seed, job.index, job.phase)
            remaining = int(job.num)
            if remaining == 0:
                yield None, True
            while remaining > 0:
                size = min(self.batch_size, remaining)
                batch = buffers[slot % len(buffers)][:size]
                slot += 1
                generator.standard_normal(dtype=np.float32, out=batch)
                np.multiply(batch, self.sigma, out=batch)
                np.add(batch, job.x, out=batch)
                remaining -= size
                yield batch, remaining == 0

    def _batches_in_order(self, jobs: Iterable[NoiseJob]) -> Iterator[tuple[np.ndarray | None, bool]]:
        if self.prefetch == 0:  # serial: draw a batch, classify it, draw the next
            yield from self._noisy_batches(jobs, [np.empty((self.batch_size, *self.chw), dtype=np.float32)])
            return
        # A buffer is reused only after the consumer has finished with it: at most `prefetch` batches wait in
        # the queue, one is being filled and one is being classified.
        buffers = [np.empty((self.batch_size, *self.chw), dtype=np.float32) for _ in range(self.prefetch + 2)]
        ready: queue.Queue[object] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        producer = threading.Thread(target=self._produce, args=(jobs, buffers, ready, stop), daemon=True)
        producer.start()
        try:
            while True:
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            while producer.is_alive():
                try:
                    ready.get(timeout=0.05)
                except queue.Empty:
                    pass
            producer.join()

    def _produce(self, jobs: Iterable[NoiseJob], buffers: list[np.ndarray], ready: queue.Queue[object], stop: threading.Event) -> None:
        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in self._noisy_batches(jobs, buffers):
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it in the caller's thread
            put(_Failure(exc))
