"""SAMPLE-UNDER-NOISE, streamed: class counts of the base classifier on x + N(0, sigma^2 I).

**How the noise is drawn** (``NOISE_SPEC``; an auditor can regenerate every draw from it). Example ``index`` in
``phase`` (0 selection, 1 estimation, 2 predict) owns the stream ``SeedSequence([seed, index, phase])``, whose
two spawned children seed two numpy PCG64 generators, R (radii) and A (angles). An image of D = C*H*W values
is Q = ceil(D/2) Box-Muller pairs; image t of the stream takes the next Q 64-bit words of R and the next
ceil(Q/2) words of A, so images are drawn one after the other and cutting the sequence into batches of any
size changes nothing. For pair j, with r_j the j-th word of R and a_j the j-th 32-bit half of A's words (low half
first), both read as numpy's ``Generator.random`` reads them (float64 from r >> 11, float32 from a >> 8; the
angles are computed from A's raw words, to the same bits, because one call per word costs less than one per half):

- u_j = 1 - (r_j >> 11) 2^-53 (exact in float64), uniform on the grid {k 2^-53 : k = 1..2^53} of (0, 1];
- theta_j = float32((a_j >> 8) 2^-24) * float32(2 pi) in float32;
- rho_j = sqrt(float32(-2 sigma^2) * log(float32(u_j))) in float32;
- the noise is e[j] = rho_j cos(theta_j) and e[Q + j] = rho_j sin(theta_j) (flat C order; for odd D the last
  sine is dropped), and the model sees the float32 image x + e, NOT clipped to [0, 1] (clipping would change the
  smoothing distribution and void the guarantee).

**Why this is the Gaussian the guarantee needs.** Box-Muller is exact: for U uniform on (0, 1] and V uniform on
[0, 1) independent, sqrt(-2 ln U) (cos 2 pi V, sin 2 pi V) are two independent N(0, 1) (Box and Muller 1958), so
e ~ N(0, sigma^2 I). The draws differ from that law only by (i) float32 rounding and the finite grids of u and
theta, as every floating-point sampler does (numpy's float32 ziggurat, used before, included), and (ii) the
first cell of u's grid: u >= 2^-53 caps a pair's radius at sqrt(106 ln 2) = 8.57 (in units of sigma), which the
exact law exceeds with probability exactly 2^-53 per pair. Coupling each draw with an exact Gaussian one, a
certificate of n samples meets a capped pair with probability at most n * Q * 2^-53 (``tail_bound``): 1.7e-9
at n = 10^4 for 32x32 images and 6.8e-8 at n = 10^5 for 64x64 images, below 0.01% of alpha = 0.001. Like
rounding, that term is not added to alpha in the bounds; the certify stage records it (``noise`` in
``metrics/certify.json``) and the dossier states it.

**Which float32 log, cos and sin.** They are numpy's, and their last bits depend on numpy's version and on the
loop numpy dispatches for the CPU: on an AVX2 machine numpy 2.4's baseline (SSE) loops and its AVX2 (X86_V3) loops
disagree on 17% of cos, 12% of sin and 22% of log values (1 unit in the last place; log up to 4), and on 22% of
the noise values (up to 5 units, 1.8e-7 at sigma 0.25). The default run's 200 certificates were nevertheless
identical with the baseline and the AVX2 loops (none of the 2.02M noisy samples classified differently), and on an
AVX2 AMD and an AVX-512 Intel machine. So the draws are reproduced bit for bit where :func:`noise_kernels`
(recorded with the results) matches; elsewhere a sample near a decision boundary may be classified differently.
Either way the noise is a float32 rounding of the same Gaussian, and the certificates are valid.

**Independence.** Different (seed, index, phase) give statistically independent streams (SeedSequence's
guarantee), so selection and estimation samples are independent and no noise is shared between examples (the
dataset-level bound of :mod:`certification.dataset_bounds` relies on that).

Why not ``Generator.standard_normal``: numpy's float32 ziggurat costs about as much per value as the default
model's inference per sample, and this vectorised form is cheaper (``benchmarks/certify_throughput.py`` measures
both; ``benchmarks/RESULTS.md`` keeps the figures); it also fixes every image's bits at a known place in its
stream, and PCG64's ``advance`` lets any thread draw any batch (:meth:`NoiseStream.skip`).

Why ~1M values per chunk and reused work arrays: each chunk costs about a dozen numpy calls, and a thread holds
the GIL between them. Small chunks with fresh temporaries stop scaling with threads (page faults of the
temporaries and GIL hand-offs); large chunks written into per-thread arrays that are reused do scale
(``Generator.random(out=...)`` fills them; only the angle words come from ``random_raw``, whose ~2 MB array per
chunk the allocator hands back chunk after chunk).

Memory does not grow with the number of samples: background threads fill a small pool of preallocated
(batch, C, H, W) buffers while the calling thread runs inference on the previous one (numpy and onnxruntime
release the GIL), noise is made in chunks of whole images (about 1M values), and counts are accumulated with ``np.bincount``.
Every batch is drawn from its own place in its stream, so any number of noise threads gives the same counts.
"""
from __future__ import annotations

import collections
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from certification.lighting import LightingCovariance, LightingNoise

PHASE_SELECTION = 0
PHASE_ESTIMATION = 1
PHASE_PREDICT = 2

#: Recorded in outputs so an auditor can regenerate every noise draw (the module docstring gives the formulas).
NOISE_SPEC = (
    "gaussian N(0, sigma^2 I), unclipped, float32, Box-Muller; SeedSequence([seed, index, phase]).spawn(2) seeds "
    "numpy PCG64 generators R (radii) and A (angles); image t of D values takes Q = ceil(D/2) words of R and "
    "ceil(Q/2) words of A; u = 1 - (r >> 11) 2^-53, theta = f32((a32 >> 8) 2^-24) * f32(2 pi) (a32: 32-bit halves "
    "of A's words, low half first; both as numpy Generator.random reads them), "
    "rho = sqrt(f32(-2 sigma^2) * log(f32(u))), e[j] = rho cos theta, e[Q + j] = rho sin theta; "
    "phases 0=selection 1=estimation 2=predict"
)

#: Probability, per Box-Muller pair, that the exact law's radius exceeds the largest one the grid of u allows.
TAIL_PROBABILITY_PER_PAIR = 2.0**-53

_TWO_PI = np.float32(2.0 * math.pi)
_TWO_TO_MINUS_24 = np.float32(2.0**-24)
_CHUNK_VALUES = 1 << 20  # noise is made this many values at a time (whole images): see the module docstring


def noise_kernels() -> dict[str, str]:
    """The float32 math the noise was drawn with: numpy's version and, for log, cos and sin, the CPU loop numpy
    dispatches (e.g. ``X86_V3`` for AVX2, ``baseline(X86_V2)``; "unknown" where numpy cannot say). Recorded
    with certificates because these loops round some values differently (module docstring)."""
    names = ("log", "cos", "sin")
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:  # numpy < 2.0
        return {"numpy": np.__version__, **dict.fromkeys(names, "unknown")}
    info = opt_func_info(func_name=f"^({'|'.join(names)})$", signature="float32")
    return {"numpy": np.__version__, **{name: str(info.get(name, {}).get("ff", {}).get("current", "unknown")) for name in names}}


def pairs_per_image(chw: tuple[int, ...]) -> int:
    """Q = ceil(C*H*W / 2): Box-Muller pairs per image."""
    return (math.prod(chw) + 1) // 2


def tail_bound(num: int, chw: tuple[int, ...]) -> float:
    """Upper bound on the probability that any of ``num`` noise images of shape ``chw`` differs from its exact
    Gaussian coupling beyond float32 rounding (radius cap of the u grid): num * Q * 2^-53."""
    return float(num) * pairs_per_image(chw) * TAIL_PROBABILITY_PER_PAIR


class NoiseStream:
    """The noise e ~ N(0, sigma^2 I) of the stream (seed, index, phase) for images of shape ``chw``, image after
    image (module docstring). Successive calls continue the stream, so any split of it into calls gives the
    same images. With a non-isotropic ``lighting`` covariance (:mod:`certification.lighting`) each image also
    gets sum_k tau' z_k v_k, drawn from the stream's third SeedSequence child: the isotropic part is unchanged."""

    def __init__(self, seed: int, index: int, phase: int, chw: tuple[int, ...], sigma: float,
                 lighting: LightingCovariance | None = None) -> None:
        anisotropic = lighting is not None and not lighting.isotropic
        children = np.random.SeedSequence([int(seed), int(index), int(phase)]).spawn(3 if anisotropic else 2)
        radii, angles = children[0], children[1]
        self._lighting = LightingNoise(children[2], lighting) if anisotropic and lighting is not None else None
        self._radius_uniforms = np.random.Generator(np.random.PCG64(radii))
        self._angle_bits = np.random.PCG64(angles)  # read raw: see _angle_fractions
        self.chw = tuple(int(d) for d in chw)
        self.dim = math.prod(self.chw)
        self.pairs = pairs_per_image(self.chw)
        self._angle_words = (self.pairs + 1) // 2
        self._minus_two_var = np.float32(-2.0 * float(sigma) ** 2)
        self._chunk = max(1, _CHUNK_VALUES // max(self.dim, 1))

    def skip(self, images: int) -> "NoiseStream":
        """Move the stream ``images`` images ahead without drawing them (PCG64 ``advance``: O(log n) time), so a
        batch deep in a stream can be drawn on its own, e.g. by another thread. Returns ``self``."""
        self._radius_uniforms.bit_generator.advance(int(images) * self.pairs)
        self._angle_bits.advance(int(images) * self._angle_words)
        if self._lighting is not None:
            self._lighting.skip(images)
        return self

    def add_to(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write x + e for the next len(out) noise images into ``out`` (float32 (m, C, H, W), C-contiguous);
        ``x`` is one float32 (C, H, W) image."""
        if out.dtype != np.float32 or not out.flags.c_contiguous or out.shape[1:] != self.chw:
            raise ValueError(f"noise goes into a C-contiguous float32 (m, {', '.join(map(str, self.chw))}) array, got {out.dtype} {out.shape}")
        flat = out.reshape(len(out), self.dim)
        x_flat = np.ascontiguousarray(x, dtype=np.float32).reshape(self.dim)
        for start in range(0, len(flat), self._chunk):
            self._fill(x_flat, flat[start : start + self._chunk])
            if self._lighting is not None:
                self._lighting.add(flat[start : start + self._chunk])

    def sample(self, num: int) -> np.ndarray:
        """The next ``num`` noise images e alone, float32 (num, C, H, W) (equal to ``add_to`` with x = 0)."""
        out = np.empty((int(num), *self.chw), dtype=np.float32)
        self.add_to(np.zeros(self.chw, dtype=np.float32), out)
        return out

    def _fill(self, x: np.ndarray, out: np.ndarray) -> None:
        m, q, d = len(out), self.pairs, self.dim
        uniform, rho, theta = _scratch(m * q, m * 2 * self._angle_words)
        self._radius_uniforms.random(out=uniform)  # (r >> 11) 2^-53 on [0, 1)
        np.subtract(1.0, uniform, out=rho, casting="same_kind")  # float32(u), u = 1 - U exact in float64, on (0, 1]
        np.log(rho, out=rho)
        np.multiply(rho, self._minus_two_var, out=rho)
        np.sqrt(rho, out=rho)
        rho = rho.reshape(m, q)
        self._angle_fractions(theta)  # (a32 >> 8) 2^-24, 32-bit halves low first
        theta = theta.reshape(m, 2 * self._angle_words)[:, :q]
        np.multiply(theta, _TWO_PI, out=theta)
        cosine = out[:, :q]
        np.cos(theta, out=cosine)
        np.multiply(cosine, rho, out=cosine)
        np.add(cosine, x[:q], out=cosine)
        sine = out[:, q:]
        np.sin(theta[:, : d - q], out=sine)
        np.multiply(sine, rho[:, : d - q], out=sine)
        np.add(sine, x[q:], out=sine)

    def _angle_fractions(self, out: np.ndarray) -> None:
        """The next len(out) / 2 words of A as float32 (a32 >> 8) 2^-24, 32-bit halves low first: the values
        ``Generator.random(dtype=float32)`` returns, read from the raw words (one generator call per word instead
        of one per half: 0.6 of the time). Exact: a32 >> 8 < 2^24 converts to float32 exactly, and times 2^-24
        is exact."""
        words = self._angle_bits.random_raw(len(out) // 2)
        halves = words.astype("<u8", copy=False).view("<u4")  # low half first on any host (no copy on little-endian)
        np.right_shift(halves, np.uint32(8), out=halves)
        np.copyto(out, halves, casting="unsafe")
        np.multiply(out, _TWO_TO_MINUS_24, out=out)


_SCRATCH = threading.local()  # per thread: the work arrays of NoiseStream._fill, reused from chunk to chunk


def _scratch(pairs: int, halves: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's work arrays: float64 (pairs,), float32 (pairs,), float32 (halves,) views of buffers that
    are reused, so drawing noise allocates (and page-faults) nothing after a thread's first chunk."""
    buffers = getattr(_SCRATCH, "buffers", None)
    if buffers is None or buffers[0].size < pairs or buffers[2].size < halves:
        pairs_size, halves_size = (pairs, halves) if buffers is None else (max(pairs, buffers[0].size), max(halves, buffers[2].size))
        buffers = (np.empty(pairs_size, np.float64), np.empty(pairs_size, np.float32), np.empty(halves_size, np.float32))
        _SCRATCH.buffers = buffers
    return buffers[0][:pairs], buffers[1][:pairs], buffers[2][:halves]


@dataclass(frozen=True)
class NoiseJob:
    """``num`` noisy copies of one image ``x`` (float32 C,H,W), drawn from the stream (seed, index, phase), from
    its image ``start`` on (0: the stream's beginning; sequential tests continue a stream in installments)."""

    x: np.ndarray
    seed: int
    index: int
    phase: int
    num: int
    start: int = 0


class NoisyCounter:
    """Counts base-classifier labels on noisy copies of images, streamed in batches of ``batch_size``.

    Noise is drawn by ``workers`` background threads, each batch from its own place in its job's stream
    (:meth:`NoiseStream.skip`), ``prefetch`` batches beyond the workers' ahead of the model, while the calling
    thread runs inference (``prefetch`` 0: draw and classify in turn on the calling thread). Counts do not
    depend on either.
    """

    def __init__(
        self,
        classify: Callable[[np.ndarray], np.ndarray],
        num_classes: int,
        sigma: float,
        batch_size: int,
        chw: tuple[int, int, int],
        prefetch: int = 2,
        workers: int = 1,
        lighting: LightingCovariance | None = None,
    ) -> None:
        self.classify = classify
        self.lighting = lighting
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)  # as given: the stream rounds -2 sigma^2 to float32 itself (NOISE_SPEC)
        self.batch_size = int(batch_size)
        self.chw = tuple(int(d) for d in chw)
        self.prefetch = max(0, int(prefetch))
        self.workers = max(1, int(workers))
        self._local = threading.local()  # per noise thread: (job, next image, stream) to continue from

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

    def _plan(self, jobs: Iterable[NoiseJob]) -> Iterator[tuple[NoiseJob, int, int, bool]]:
        """(job, first image in its stream, number of images, whether it ends the job) for every batch in order."""
        for job in jobs:
            if int(job.num) == 0:
                yield job, 0, 0, True
            for begin in range(0, int(job.num), self.batch_size):
                size = min(self.batch_size, int(job.num) - begin)
                yield job, int(job.start) + begin, size, begin + size == int(job.num)

    def _fill(self, job: NoiseJob, start: int, batch: np.ndarray) -> None:
        """x + e for images [start, start + len(batch)) of the job's stream, into ``batch``.

        A thread that goes on where it stopped in the same job keeps its stream (seeding one costs ~0.1 ms);
        otherwise it seeds the job's stream afresh and skips to ``start``. Either way the images are the same."""
        cached = getattr(self._local, "stream", None)
        if cached is not None and cached[0] is job and cached[1] == start:
            stream = cached[2]
        else:
            stream = NoiseStream(job.seed, job.index, job.phase, self.chw, self.sigma, self.lighting).skip(start)
        self._local.stream = None  # a fill that fails half-way leaves no stream at a wrong place
        stream.add_to(job.x, batch)
        self._local.stream = (job, start + len(batch), stream)

    def _batches_in_order(self, jobs: Iterable[NoiseJob]) -> Iterator[tuple[np.ndarray | None, bool]]:
        """(noisy batch, whether it ends its job) in plan order; a batch is valid until the next one is asked for."""
        plan = self._plan(jobs)
        if self.prefetch == 0:  # serial: draw a batch, classify it, draw the next
            buffer = np.empty((self.batch_size, *self.chw), dtype=np.float32)
            for job, start, size, last in plan:
                if size:
                    self._fill(job, start, buffer[:size])
                yield (buffer[:size] if size else None), last
            return
        # Up to `depth` batches are being drawn or wait ready, each in its own buffer, while the caller classifies
        # one more; a buffer goes back to the pool only when the caller asks for the next batch.
        depth = self.workers + self.prefetch
        free = [np.empty((self.batch_size, *self.chw), dtype=np.float32) for _ in range(depth + 1)]
        pending: collections.deque[tuple[Future[None] | None, np.ndarray | None, int, bool]] = collections.deque()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="smoothcert-noise") as pool:

            def submit() -> None:
                item = next(plan, None)
                if item is None:
                    return
                job, start, size, last = item
                if size == 0:
                    pending.append((None, None, 0, last))
                    return
                buffer = free.pop()
                pending.append((pool.submit(self._fill, job, start, buffer[:size]), buffer, size, last))

            try:
                for _ in range(depth):
                    submit()
                while pending:
                    future, buffer, size, last = pending.popleft()
                    if future is None or buffer is None:
                        yield None, last
                    else:
                        future.result()  # re-raises a worker's exception here, in the caller's thread
                        yield buffer[:size], last
                        free.append(buffer)
                    submit()
            finally:
                for future, _, _, _ in pending:
                    if future is not None:
                        future.cancel()
