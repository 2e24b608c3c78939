"""Certify a data split example by example, with resumable, never-half-written output.

Outputs: ``OUT.jsonl`` (one JSON object per example, in index order; schema below) and ``OUT.tsv`` beside it
with the columns of the reference implementation's certify log (``idx label predict radius correct time``).

Resume: while running, every finished example is appended to ``OUT.jsonl.partial`` and fsynced; its first
line is a header naming the run (model and data SHA-256, sigma, n0, n, alpha, seed, example indices). A rerun
with the same header continues after the last complete example; because the noise of an example depends only
on (seed, example index, phase), the finished output is identical to an uninterrupted run's (up to the timing
field ``seconds``). The final files are written atomically when every example is done, then the partial file
is removed. A partial file from a different run is discarded with a warning.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from certification.dataset_io import Split, load_split
from certification.errors import InputError, ParameterError, StaleArtifactError
from certification.fileio import sha256_file, write_text_atomic
from certification.progress import progress
from certification.lighting import LIGHTING_NOISE_SPEC, LightingCovariance, check_lighting, smoothing_covariance
from certification.records import CertifyRecord, certify_jsonl_text, certify_tsv_text, json_line
from certification.noise_sampling import NOISE_SPEC, noise_kernels, tail_bound
from certification.onnx_model import PROVIDERS
from certification.shards import select_indices, shard_indices
from certification.smoothing import CertifyResult, SmoothedClassifier, check_parameters, check_sigma_and_batch
from certification.summary import certify_metrics, throughput

if TYPE_CHECKING:
    from certification.ray_backend import RaySettings

FORMAT = "smoothcert-certify-partial/2"
#: Examples handed to the engine at once (bounds the float32 copy of the data held in memory).
CHUNK_EXAMPLES = 128


def tsv_path_for(out: Path) -> Path:
    """The reference-style TSV written beside ``out``."""
    return out.with_suffix(".tsv")


def partial_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@dataclass(frozen=True)
class RunOutcome:
    """What a certification run produced: the records in index order, and how many came from a partial file."""

    records: list[CertifyRecord]
    resumed: int  # examples taken from a partial file of an interrupted run
    #: set by a Ray run: the workers' runtime block and numpy noise loops (a local run's come from its classifier)
    runtime: dict[str, Any] | None = None
    noise_kernels: dict[str, Any] | None = None

    def throughput(self) -> dict[str, float]:
        return throughput(self.records)


def record_from_result(result: CertifyResult, alpha: float, sigma: float, seed: int, *, model_sha256: str,
                       data_sha256: str, mahalanobis: bool = False) -> CertifyRecord:
    """The record of one example's CERTIFY result, naming the model and data split it was computed on
    (``mahalanobis``: a lighting run, whose rows carry ``mahalanobis_radius``)."""
    return CertifyRecord(
        index=result.index, label=int(result.label) if result.label is not None else 0, prediction=result.prediction,
        correct=bool(result.correct), radius=result.radius, n0=result.n0, n=result.n, n_a=result.n_a,
        p_lower=result.p_lower, alpha=alpha, sigma=sigma, seed=seed, seconds=result.seconds,
        counts_selection=result.counts_selection, counts_estimation=result.counts_estimation,
        model_sha256=model_sha256, data_sha256=data_sha256,
        mahalanobis_radius=result.mahalanobis_radius if mahalanobis else None,
    )


def write_run_files(out: str | os.PathLike[str], records: Sequence[CertifyRecord]) -> None:
    """Write ``out`` (JSONL) and the TSV beside it, each atomically."""
    out = Path(out)
    write_text_atomic(tsv_path_for(out), certify_tsv_text(records))
    write_text_atomic(out, certify_jsonl_text(records))


def _run_header(classifier: SmoothedClassifier, split: Split, indices: np.ndarray, n0: int, n: int, alpha: float, seed: int) -> dict[str, Any]:
    lighting = {} if classifier.lighting is None else {"lighting": classifier.lighting.to_record()}
    return {
        **lighting,
        "format": FORMAT,
        "model_sha256": classifier.base_classifier.sha256,
        "data_sha256": sha256_file(split.path) if split.path else split_digest(split),
        "sigma": classifier.sigma,
        "n0": int(n0),
        "n": int(n),
        "alpha": float(alpha),
        "seed": int(seed),
        "indices_sha256": hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest(),
        "n_examples": int(len(indices)),
    }


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the run (a lock file beside it, removed afterwards): a second run
    writing the same output stops at once with one line instead of corrupting the first one's partial file."""
    lock_path = out.with_name(f".{out.name}.lock")
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"{out}: another certification run is writing this output; wait for it or choose "
                             "another --out") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def split_digest(split: Split) -> str:
    """SHA-256 of an in-memory split's images and labels (for a split that was not read from a file)."""
    digest = hashlib.sha256()
    for array in (split.images, split.labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _read_partial(path: Path, header: dict[str, Any], indices: np.ndarray) -> list[CertifyRecord]:
    """Records of an interrupted run with the same header; [] when there is none or it belongs to another run."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]  # a line cut by a crash is dropped
    lines = complete.splitlines()
    try:
        stored = json.loads(lines[0])["header"] if lines else None
    except (json.JSONDecodeError, KeyError, TypeError):
        stored = None
    if stored != header:
        print(f"warning: {path} belongs to a different run (model, data or parameters changed); starting afresh", file=sys.stderr)
        return []
    records: list[CertifyRecord] = []
    for position, line in enumerate(lines[1:]):
        try:
            record = CertifyRecord.from_dict(json.loads(line), str(path))
        except (json.JSONDecodeError, InputError):
            break
        if position >= len(indices) or record.index != int(indices[position]):
            break
        records.append(record)
    return records


def certify_split(
    classifier: SmoothedClassifier,
    split: Split,
    out: str | os.PathLike[str],
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    max_examples: int = 0,
    indices: Sequence[int] | np.ndarray | None = None,
    show_progress: bool = True,
    ray: "RaySettings | None" = None,
    threads: int | None = None,
    noise_threads: int | None = None,
) -> RunOutcome:
    """CERTIFY the examples of ``split`` (a seeded subset when ``max_examples`` > 0, or exactly ``indices``)
    and write ``out`` (JSONL) and its TSV; resumes an interrupted run of the same parameters.

    ``ray``: certify on Ray workers (:mod:`certification.ray_backend`; ``threads``/``noise_threads`` per worker,
    default from its CPUs) instead of in this process. Results arrive in any order and are written in example order:
    the files are those of a local run (the timing field ``seconds`` aside)."""
    out = Path(out)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, split.path or "data")
    if int(split.labels.max()) >= classifier.num_classes:
        raise InputError(f"{split.path or 'data'}: label {int(split.labels.max())} is outside the class range [0, {classifier.num_classes}) of the model")
    chosen = select_indices(len(split), max_examples, seed) if indices is None else np.asarray(indices, dtype=np.int64)
    # parameters are checked before any file is touched
    SmoothedClassifier._check_indices(chosen, len(chosen))
    check_parameters(alpha, seed, n0=n0, n=n)
    header = _run_header(classifier, split, chosen, n0, n, alpha, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(out), contextlib.ExitStack() as stack:
        pool = None
        if ray is not None:  # connected and started before any file is written: a cluster that fails leaves none
            from certification.ray_backend import RayPool

            pool = stack.enter_context(RayPool(ray, classifier, threads=threads, noise_threads=noise_threads,
                                               provider=_provider_name(classifier)))
        partial = partial_path_for(out)
        records = _read_partial(partial, header, chosen)
        resumed = len(records)
        if resumed:  # keep the header and the complete records (their bytes are a prefix of the file)
            kept = json_line({"header": header}) + certify_jsonl_text(records)
            os.truncate(partial, len(kept.encode("utf-8")))
        else:
            write_text_atomic(partial, json_line({"header": header}))
        todo = chosen[resumed:]
        handle = stack.enter_context(open(partial, "a", encoding="utf-8"))
        if pool is None:
            results: Iterator[CertifyResult] = _local_results(classifier, split, todo, n0, n, alpha, seed)
        else:
            results = (result for task in pool.certify(split.model_input, split.labels, todo, n0, n, alpha, seed)
                       for result in task.results)
        bar = stack.enter_context(contextlib.closing(progress(
            total=len(chosen), initial=resumed, unit="ex", desc="certify", **({} if show_progress else {"disable": True}))))
        waiting: dict[int, CertifyResult] = {}  # finished out of order, written when their turn comes
        samples_per_example, started = int(n0) + int(n), time.perf_counter()
        for result in results:
            if result.index in waiting or len(records) - resumed + len(waiting) >= len(todo):
                raise RuntimeError(f"example {result.index} was certified twice")
            waiting[result.index] = result
            while waiting and len(records) < len(chosen) and int(chosen[len(records)]) in waiting:
                ready = waiting.pop(int(chosen[len(records)]))
                record = record_from_result(ready, float(alpha), classifier.sigma, int(seed),
                                            model_sha256=header["model_sha256"], data_sha256=header["data_sha256"],
                                            mahalanobis=classifier.lighting is not None)
                handle.write(json_line(record.to_dict()))
                handle.flush()
                os.fsync(handle.fileno())
                records.append(record)
            bar.update(1)
            elapsed = time.perf_counter() - started if pool is not None else result.seconds
            done = len(records) - resumed + len(waiting) if pool is not None else 1
            if elapsed > 0:
                bar.set_postfix(ex_s=f"{done / elapsed:.2f}", samples_s=f"{done * samples_per_example / elapsed:,.0f}")
        if len(records) != len(chosen) or waiting:
            raise RuntimeError(f"{len(chosen) - len(records)} example(s) of the run were never certified")
        runtime = pool.runtime_record() if pool is not None else None
        kernels = pool.noise_kernels() if pool is not None else None
        handle.close()
        write_run_files(out, records)
        partial.unlink()
    return RunOutcome(records=records, resumed=resumed, runtime=runtime, noise_kernels=kernels)


def _local_results(classifier: SmoothedClassifier, split: Split, todo: np.ndarray, n0: int, n: int, alpha: float,
                   seed: int) -> Iterator[CertifyResult]:
    """The single-process engine over ``todo``, in example order, :data:`CHUNK_EXAMPLES` images at a time."""
    for start in range(0, len(todo), CHUNK_EXAMPLES):
        part = todo[start : start + CHUNK_EXAMPLES]
        yield from classifier.iter_certify(split.model_input(part), split.labels[part], n0, n, alpha, seed, indices=part)


def _provider_name(classifier: SmoothedClassifier) -> str:
    """The CLI's provider name (cpu, cuda) of the classifier's onnxruntime provider, for the Ray workers."""
    chosen = classifier.base_classifier.session_config.get("provider")
    return next((name for name, full in PROVIDERS.items() if full == chosen), "auto")


def parameter_checks(sigma: float, n0: int, n: int, alpha: float, batch_size: int, seed: int, max_examples: int,
                     lighting: tuple[str, float] = ("none", 0.0)) -> None:
    """Every numeric parameter of a certification run, checked before any file is read or written (``lighting``:
    (directions, tau) of :mod:`certification.lighting`)."""
    check_lighting(*lighting, sigma=sigma)
    check_sigma_and_batch(sigma, batch_size)
    check_parameters(alpha, seed, n0=n0, n=n)
    if not isinstance(max_examples, (int, np.integer)) or max_examples < 0:
        raise ParameterError(f"max_examples must be 0 (all) or a positive integer, got {max_examples!r}")


@dataclass(frozen=True)
class RunOptions:
    """What every run of the smoothed classifier over a split needs (certify, predict and decide alike): noise sigma
    ([0,1]-pixel L2 units), per-example alpha, noise seed, the seeded subset size (0 = all), and the runtime knobs,
    which never change a result (batch size, onnxruntime and noise threads, execution provider)."""

    sigma: float
    alpha: float
    seed: int
    batch_size: int
    max_examples: int = 0
    threads: int | None = None
    noise_threads: int | None = None
    provider: str = "auto"
    lighting_directions: str = "none"  # certification.lighting.DIRECTION_SETS
    lighting_tau: float = 0.0  # RMS per-pixel std each lighting direction adds, [0,1]-pixel units

    def check(self, n0: int, n: int) -> None:
        """Every number checked before any file is read or written (``n0``/``n``: the run's sample sizes)."""
        parameter_checks(self.sigma, n0, n, self.alpha, self.batch_size, self.seed, self.max_examples,
                         (self.lighting_directions, self.lighting_tau))

    def covariance(self, chw: tuple[int, ...]) -> LightingCovariance | None:
        """The smoothing covariance for images of shape ``chw``; None for isotropic noise (lighting ``none``)."""
        return smoothing_covariance(self.lighting_directions, self.lighting_tau, self.sigma, chw)


def open_run(model_path: str | os.PathLike[str], data_path: str | os.PathLike[str], options: RunOptions,
             num_classes: int | None = None) -> tuple[SmoothedClassifier, Split, np.ndarray]:
    """The smoothed classifier of the ONNX model, the data split it runs on, checked against each other (input
    shape, label range, and ``num_classes`` when the model card gives one) before any noise is drawn, and the
    run's example indices (:func:`select_indices`)."""
    classifier = SmoothedClassifier.from_onnx(model_path, options.sigma, batch_size=options.batch_size,
                                              threads=options.threads, provider=options.provider,
                                              noise_threads=options.noise_threads)
    if num_classes is not None and num_classes != classifier.num_classes:
        raise StaleArtifactError(f"{model_path}: the model has {classifier.num_classes} outputs but its model card lists "
                                 f"{num_classes} classes; re-run export (or pass the matching model card)")
    split = load_split(data_path, num_classes=classifier.num_classes)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, str(data_path))
    covariance = options.covariance(split.image_shape_chw)
    if covariance is not None:
        classifier = SmoothedClassifier(classifier.base_classifier, classifier.sigma, classifier.batch_size,
                                        classifier.prefetch, classifier.noise_threads, lighting=covariance)
    return classifier, split, select_indices(len(split), options.max_examples, options.seed)


def certify_files(model_path: str | os.PathLike[str], data_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  options: RunOptions, n0: int, n: int, *, shard: tuple[int, int] | None = None,
                  num_classes: int | None = None, show_progress: bool = True,
                  ray: "RaySettings | None" = None) -> tuple[RunOutcome, SmoothedClassifier, Split]:
    """Load the ONNX model and the data split, certify (resumably) and write ``out`` and its TSV.

    ``shard`` (K, N) certifies only every N-th example of the run, starting at K (see :mod:`certification.shards`).
    ``num_classes``, when given (the model card's class count), must equal the model's output count; it is
    checked before any example is certified. ``ray``: run on Ray workers (see :func:`certify_split`), the
    options' threads and noise threads then being per worker.
    """
    options.check(n0, n)
    classifier, split, chosen = open_run(model_path, data_path, options, num_classes)
    indices = chosen if shard is None else shard_indices(chosen, shard)
    outcome = certify_split(classifier, split, out, n0, n, options.alpha, options.seed, indices=indices,
                            show_progress=show_progress, ray=ray, threads=options.threads,
                            noise_threads=options.noise_threads)
    return outcome, classifier, split


def noise_record(samples_per_example: int, image_shape_chw: tuple[int, int, int],
                 kernels: dict[str, Any] | None = None, lighting: LightingCovariance | None = None) -> dict[str, Any]:
    """What drew the noise: the exact recipe, numpy's float32 loops (``kernels``: those of the processes that drew
    it, default this one's), and the tail bound per certificate; for a lighting run also ``covariance``
    (:meth:`LightingCovariance.to_record`) and the lighting part of the recipe."""
    record: dict[str, Any] = {"spec": NOISE_SPEC, "kernels": noise_kernels() if kernels is None else kernels,
                              "tail_bound_per_certificate": tail_bound(int(samples_per_example), image_shape_chw)}
    if lighting is not None:
        record["spec"] = f"{NOISE_SPEC}; {LIGHTING_NOISE_SPEC}"
        record["covariance"] = lighting.to_record()
    return record


def runtime_record(classifier: SmoothedClassifier) -> dict[str, Any]:
    """The runtime block of a single-process run: :meth:`SmoothedClassifier.runtime_record`."""
    return classifier.runtime_record()


def run_metrics(
    outcome: RunOutcome,
    classifier: SmoothedClassifier,
    split: Split,
    *,
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    max_examples: int,
    radii: Sequence[float],
    confidence: float,
    class_names: Sequence[str] | None,
    batch_size: int,
) -> dict[str, Any]:
    """The ``metrics/certify.json`` document of a finished run (:func:`certification.summary.certify_metrics`)."""
    if class_names is not None and len(class_names) != classifier.num_classes:
        raise StaleArtifactError(f"{len(class_names)} class names are given but the model has {classifier.num_classes} outputs; "
                                 "re-run export (or fix the model card)")
    first = outcome.records[0]
    class_names = list(class_names) if class_names is not None else [str(k) for k in range(classifier.num_classes)]
    return certify_metrics(
        outcome.records,
        model={"path": Path(model_path).as_posix(), "sha256": classifier.base_classifier.sha256},
        data={"path": Path(data_path).as_posix(), "sha256": first.data_sha256, "n_examples_total": len(split)},
        max_examples=max_examples, radii=radii, confidence=confidence, class_names=class_names,
        runtime=outcome.runtime if outcome.runtime is not None else runtime_record(classifier),
        noise=noise_record(first.n0 + first.n, split.image_shape_chw, outcome.noise_kernels, classifier.lighting),
        batch_size=batch_size,
    )
