"""The base classifier alone: argmax of the ONNX artifact's logits (no noise, no smoothing)."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from scipy.stats import binom

from certification.errors import InputError


class SmoothedPredictor(Protocol):
    """What the analyses need from ``certification.SmoothedClassifier``: PREDICT (-1 = abstain) and its counts."""

    def predict(self, x: np.ndarray, n: int, alpha: float, seed: int, index: int = 0) -> int: ...

    def predict_counts(self, images: np.ndarray, n: int, seed: int, indices: np.ndarray | None = None) -> list[np.ndarray]: ...


def open_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session for ``path`` with at most ``threads`` intra-op threads."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ONNX model not found; run the export stage first")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise InputError(f"{path}: onnxruntime cannot load the model ({str(exc).splitlines()[0]})") from None


def base_logits(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of float32 NCHW ``images`` in [0, 1], computed in batches."""
    name = session.get_inputs()[0].name
    chunks = [
        session.run(None, {name: np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks, axis=0)


def base_predict(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Base-model class (argmax of logits) for each image; int64."""
    return base_logits(session, images, batch_size).argmax(axis=1).astype(np.int64)


def predict_from_counts(counts: np.ndarray, alpha: float) -> np.ndarray:
    """PREDICT's decision from (N, K) noisy-sample counts, vectorised; -1 = abstain.

    Same rule as ``SmoothedClassifier.predict``: top two counts c1 >= c2 (ties: lower class index first),
    two-sided binomial test of c1 in c1 + c2 trials at p = 1/2, abstain when the p-value exceeds alpha. For
    p = 1/2 the two-sided p-value is min(1, 2 * P(Bin(c1 + c2, 1/2) >= c1)) (scipy.stats.binomtest's value).
    """
    counts = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-counts, axis=1, kind="stable")
    rows = np.arange(len(counts))
    c1, c2 = counts[rows, order[:, 0]], counts[rows, order[:, 1]]
    pvalue = np.minimum(1.0, 2.0 * binom.sf(c1 - 1, c1 + c2, 0.5))
    pvalue[c1 + c2 == 0] = 1.0
    return np.where(pvalue > alpha, -1, order[:, 0]).astype(np.int64)


def smoothed_predictions(
    classifier: SmoothedPredictor, images: np.ndarray, indices: np.ndarray, n: int, alpha: float, seed: int
) -> np.ndarray:
    """PREDICT for each image (noise of the classifier's PREDICT phase, seeded by (seed, test index)); -1 = abstain.

    Uses the classifier's own noisy counts and :func:`predict_from_counts` (tested equal to
    ``SmoothedClassifier.predict_many``), which avoids one scipy test object per image.
    """
    if len(images) == 0:
        return np.zeros(0, dtype=np.int64)
    counts = classifier.predict_counts(images, n, seed, np.asarray(indices, dtype=np.int64))
    return predict_from_counts(np.stack(counts), alpha)
