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

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from certification.dataset_io import Split
from certification.errors import InputError
from certification.fileio import write_text_atomic
from certification.progress import progress
from certification.smoothing import CertifyResult, SmoothedClassifier, check_parameters

FORMAT = "smoothcert-certify-partial/1"
RECORD_KEYS = (
    "index", "label", "prediction", "correct", "radius", "n0", "n", "n_a", "p_lower",
    "alpha", "sigma", "seed", "seconds", "counts_selection", "counts_estimation",
)
TSV_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime"
#: Examples handed to the engine at once (bounds the float32 copy of the data held in memory).
CHUNK_EXAMPLES = 128
_SUBSET_TAG = 0x53554253  # "SUBS": keeps subset selection apart from the noise streams of the same seed


def select_indices(total: int, max_examples: int, seed: int) -> np.ndarray:
    """Sorted test-set positions to certify: all of them when ``max_examples`` is 0 or at least ``total``,
    else a seeded uniform sample without replacement (the positions stay the examples' original indices)."""
    if max_examples < 0:
        raise InputError(f"max_examples must be 0 (all) or positive, got {max_examples}")
    if max_examples == 0 or max_examples >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _SUBSET_TAG])))
    return np.sort(rng.choice(total, size=max_examples, replace=False)).astype(np.int64)


def tsv_path_for(out: Path) -> Path:
    """The reference-style TSV written beside ``out``."""
    return out.with_suffix(".tsv")


def partial_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@dataclass(frozen=True)
class RunOutcome:
    """What a certification run produced: the records in index order and its throughput."""

    records: list[dict[str, Any]]
    resumed: int  # examples taken from a partial file of an interrupted run

    @property
    def seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.records))

    def throughput(self) -> dict[str, float]:
        seconds = self.seconds
        samples = sum(r["n0"] + r["n"] for r in self.records)
        return {
            "examples_per_second": len(self.records) / seconds if seconds > 0 else 0.0,
            "samples_per_second": samples / seconds if seconds > 0 else 0.0,
        }


def result_record(result: CertifyResult, alpha: float, sigma: float, seed: int) -> dict[str, Any]:
    """The JSONL object of one example."""
    record = {
        "index": result.index,
        "label": result.label,
        "prediction": result.prediction,
        "correct": bool(result.correct),
        "radius": result.radius,
        "n0": result.n0,
        "n": result.n,
        "n_a": result.n_a,
        "p_lower": result.p_lower,
        "alpha": alpha,
        "sigma": sigma,
        "seed": seed,
        "seconds": result.seconds,
        "counts_selection": result.counts_selection,
        "counts_estimation": result.counts_estimation,
    }
    return {key: record[key] for key in RECORD_KEYS}


def json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, allow_nan=False) + "\n"


def _run_header(classifier: SmoothedClassifier, split: Split, indices: np.ndarray, n0: int, n: int, alpha: float, seed: int) -> dict[str, Any]:
    from certification.fileio import sha256_file

    return {
        "format": FORMAT,
        "model_sha256": classifier.base_classifier.sha256,
        "data_sha256": sha256_file(split.path) if split.path else "",
        "sigma": classifier.sigma,
        "n0": int(n0),
        "n": int(n),
        "alpha": float(alpha),
        "seed": int(seed),
        "indices_sha256": hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest(),
        "n_examples": int(len(indices)),
    }


def _read_partial(path: Path, header: dict[str, Any], indices: np.ndarray) -> list[dict[str, Any]]:
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
    records = []
    for position, line in enumerate(lines[1:]):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if position >= len(indices) or record.get("index") != int(indices[position]) or set(record) != set(RECORD_KEYS):
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
) -> RunOutcome:
    """CERTIFY the examples of ``split`` (a seeded subset when ``max_examples`` > 0, or exactly ``indices``)
    and write ``out`` (JSONL) and its TSV; resumes an interrupted run of the same parameters."""
    out = Path(out)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, split.path or "data")
    if int(split.labels.max()) >= classifier.num_classes:
        raise InputError(f"{split.path or 'data'}: label {int(split.labels.max())} is outside the class range [0, {classifier.num_classes}) of the model")
    chosen = select_indices(len(split), max_examples, seed) if indices is None else np.asarray(indices, dtype=np.int64)
    # parameters are checked before any file is touched
    SmoothedClassifier._check_indices(chosen, len(chosen))
    check_parameters(alpha, seed, n0=n0, n=n)
    header = _run_header(classifier, split, chosen, n0, n, alpha, seed)
    partial = partial_path_for(out)
    records = _read_partial(partial, header, chosen)
    resumed = len(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    if resumed:  # keep the header and the complete records (their bytes are a prefix of the file)
        kept = json_line({"header": header}) + "".join(json_line(r) for r in records)
        os.truncate(partial, len(kept.encode("utf-8")))
    else:
        write_text_atomic(partial, json_line({"header": header}))
    with open(partial, "a", encoding="utf-8") as handle:
        todo = chosen[resumed:]
        bar = progress(total=len(chosen), initial=resumed, unit="ex", desc="certify", **({} if show_progress else {"disable": True}))
        try:
            samples_per_example = int(n0) + int(n)
            for start in range(0, len(todo), CHUNK_EXAMPLES):
                part = todo[start : start + CHUNK_EXAMPLES]
                images = split.model_input(part)
                labels = split.labels[part]
                for result in classifier.iter_certify(images, labels, n0, n, alpha, seed, indices=part):
                    record = result_record(result, float(alpha), classifier.sigma, int(seed))
                    handle.write(json_line(record))
                    handle.flush()
                    os.fsync(handle.fileno())
                    records.append(record)
                    bar.update(1)
                    if result.seconds > 0:
                        bar.set_postfix(ex_s=f"{1 / result.seconds:.2f}", samples_s=f"{samples_per_example / result.seconds:,.0f}")
        finally:
            bar.close()
    write_text_atomic(tsv_path_for(out), tsv_text(records))
    write_text_atomic(out, "".join(json_line(r) for r in records))
    partial.unlink()
    return RunOutcome(records=records, resumed=resumed)


def tsv_text(records: Sequence[dict[str, Any]]) -> str:
    """Reference-style certify log: ``idx label predict radius correct time`` (radius at full precision)."""
    rows = [TSV_HEADER]
    for r in records:
        rows.append(f"{r['index']}\t{r['label']}\t{r['prediction']}\t{r['radius']!r}\t{int(r['correct'])}\t{r['seconds']:.4f}")
    return "\n".join(rows) + "\n"


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a finished certification JSONL file (InputError when missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: certification results not found; run the certify stage first")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    if not records:
        raise InputError(f"{path}: no certification records")
    return records


def parameter_checks(sigma: float, n0: int, n: int, alpha: float, batch_size: int, seed: int, max_examples: int) -> None:
    """Every numeric parameter of a certification run, checked before any file is read or written."""
    from certification.smoothing import check_sigma_and_batch

    check_sigma_and_batch(sigma, batch_size)
    check_parameters(alpha, seed, n0=n0, n=n)
    if not isinstance(max_examples, (int, np.integer)) or max_examples < 0:
        raise InputError(f"max_examples must be 0 (all) or a positive integer, got {max_examples!r}")


def certify_files(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int,
    max_examples: int = 0,
    threads: int | None = None,
    provider: str = "auto",
    show_progress: bool = True,
    shard: tuple[int, int] | None = None,
    noise_threads: int | None = None,
) -> tuple[RunOutcome, SmoothedClassifier, Split]:
    """Load the ONNX model and the data split, certify (resumably) and write ``out`` and its TSV.

    ``shard`` (K, N) certifies only every N-th example of the run, starting at K (see :mod:`certification.shards`).
    """
    from certification.dataset_io import load_split
    from certification.shards import shard_indices

    parameter_checks(sigma, n0, n, alpha, batch_size, seed, max_examples)
    classifier = SmoothedClassifier.from_onnx(model_path, sigma, batch_size=batch_size, threads=threads, provider=provider,
                                              noise_threads=noise_threads)
    split = load_split(data_path, num_classes=classifier.num_classes)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, str(data_path))
    indices = None if shard is None else shard_indices(select_indices(len(split), max_examples, seed), shard)
    outcome = certify_split(classifier, split, out, n0, n, alpha, seed, max_examples=max_examples, indices=indices,
                            show_progress=show_progress)
    return outcome, classifier, split
