"""File-level incremental certification (``smoothcert certify --incremental-from``): the certificates of an
approximate ONNX model from the certificate file of the original model (:mod:`certification.incremental`).

The original file must be a full certification (not itself incremental) of ``original_model`` on ``data`` with
the run's sigma and seed; every row is checked against them before any noise is drawn, so a file of another
model, split, sigma or seed stops with one line. The run certifies exactly the original file's examples and
writes ``out`` (JSONL) and its TSV with the records' one writer, each row naming the approximate model by
SHA-256 and, under ``incremental``, the original file by SHA-256.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from certification.certify_run import CHUNK_EXAMPLES, RunOptions, RunOutcome, run_lock, write_run_files
from certification.dataset_io import Split, load_split
from certification.errors import InputError, ParameterError
from certification.fileio import sha256_file
from certification.incremental import PHASE_DISAGREEMENT, IncrementalCertifier
from certification.onnx_model import OnnxClassifier
from certification.progress import progress
from certification.certificate_arrays import as_arrays, check_against_split
from certification.records import CertifyRecord, read_certify_records
from certification.smoothing import SmoothedClassifier, check_parameters, default_inference_threads


def _check_original(records: list[CertifyRecord], source: Path, original_model: Path, model_sha: str, data: Path,
                    data_sha: str, options: RunOptions) -> None:
    """One line naming the first row that is not a full certificate of ``original_model`` on ``data`` at the run's
    sigma and seed."""
    for record in records:
        where = f"{source}: example {record.index}"
        if record.is_incremental:
            raise InputError(f"{where} is itself an incremental certificate; give the original model's full certificates")
        if record.model_sha256 != model_sha:
            raise InputError(f"{where} was certified on model {record.model_sha256[:12]}..., not --original-model "
                             f"{original_model} ({model_sha[:12]}...); give the model that produced the file")
        if record.data_sha256 != data_sha:
            raise InputError(f"{where} was certified on data {record.data_sha256[:12]}..., not --data {data} "
                             f"({data_sha[:12]}...); give the split the file was computed on")
        if record.sigma != options.sigma:
            raise InputError(f"{where} was certified at sigma {record.sigma}, not --sigma {options.sigma}; use the original's sigma")
        if record.seed != options.seed:
            raise InputError(f"{where} was certified with seed {record.seed}, not --seed {options.seed}; use the original's seed")


def incremental_files(original_results: str | os.PathLike[str], original_model: str | os.PathLike[str],
                      model_path: str | os.PathLike[str], data_path: str | os.PathLike[str], out: str | os.PathLike[str],
                      options: RunOptions, n_p: int, show_progress: bool = True) -> tuple[RunOutcome, SmoothedClassifier, Split]:
    """Certify the smoothed ``model_path`` on the examples of ``original_results`` (full certificates of
    ``original_model``) with ``n_p`` disagreement samples each at level ``options.alpha`` (alpha_zeta); each row's
    alpha is the original's plus alpha_zeta. Writes ``out`` and its TSV; returns the records, the approximate
    model's smoothed classifier and the split."""
    original_results, original_model, out = Path(original_results), Path(original_model), Path(out)
    check_parameters(options.alpha, options.seed, n_p=n_p)
    options.check(1, n_p)
    if options.max_examples:
        raise ParameterError("--max-examples does not apply with --incremental-from: the original file's examples are certified")
    records = read_certify_records(original_results)
    from_sha = sha256_file(original_results)
    threads = options.threads if options.threads is not None else default_inference_threads()
    original = OnnxClassifier(original_model, threads=threads, provider=options.provider)
    classifier = SmoothedClassifier.from_onnx(model_path, options.sigma, batch_size=options.batch_size, threads=options.threads,
                                              provider=options.provider, noise_threads=options.noise_threads)
    split = load_split(data_path, num_classes=classifier.num_classes)
    classifier.base_classifier.check_input_shape(split.image_shape_chw, str(data_path))
    data_sha = sha256_file(data_path)
    _check_original(records, original_results, original_model, original.sha256, Path(data_path), data_sha, options)
    check_against_split(as_arrays(records, str(original_results)), split.labels, str(original_results))
    certifier = IncrementalCertifier(original, classifier.base_classifier, options.sigma, options.batch_size,
                                     noise_threads=classifier.noise_threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    written: list[CertifyRecord] = []
    with run_lock(out):
        bar = progress(total=len(records), unit="ex", desc="certify (incremental)", **({} if show_progress else {"disable": True}))
        try:
            for start in range(0, len(records), CHUNK_EXAMPLES):
                part = records[start:start + CHUNK_EXAMPLES]
                indices = np.array([r.index for r in part], dtype=np.int64)
                results = certifier.iter_certify(split.model_input(indices), [r.prediction for r in part],
                                                 [r.p_lower for r in part], n_p, options.alpha, options.seed, indices)
                for original_row, result in zip(part, results):
                    written.append(CertifyRecord(
                        index=original_row.index, label=original_row.label, prediction=result.prediction,
                        correct=result.prediction == original_row.label and result.prediction >= 0, radius=result.radius,
                        n0=original_row.n0, n=original_row.n, n_a=original_row.n_a, p_lower=result.p_lower,
                        alpha=original_row.alpha + float(options.alpha), sigma=classifier.sigma, seed=int(options.seed),
                        seconds=result.seconds, counts_selection=original_row.counts_selection,
                        counts_estimation=original_row.counts_estimation, model_sha256=classifier.base_classifier.sha256,
                        data_sha256=data_sha, incremental={
                            "from_sha256": from_sha, "original_model_sha256": original.sha256,
                            "original_p_lower": original_row.p_lower, "original_alpha": original_row.alpha,
                            "alpha_zeta": float(options.alpha), "noise_phase": PHASE_DISAGREEMENT, "n_p": result.n_p,
                            "disagreements": result.disagreements, "zeta_upper": result.zeta_upper}))
                    bar.update(1)
        finally:
            bar.close()
        write_run_files(out, written)
    return RunOutcome(records=written, resumed=0), classifier, split
