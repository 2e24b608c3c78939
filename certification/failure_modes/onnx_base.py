"""The base classifier alone: argmax of the ONNX artifact's logits (no noise, no smoothing)."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from scipy.stats import binom

from certification.onnx_model import session_logits


class SmoothedPredictor(Protocol):
    """What the analyses need from ``certification.SmoothedClassifier``: PREDICT (-1 = abstain) and its counts."""

    def predict(self, x: np.ndarray, n: int, alpha: float, seed: int, index: int = 0) -> int: ...

    def predict_counts(self, images: np.ndarray, n: int, seed: int, indices: np.ndarray | None = None) -> list[np.ndarray]: ...


def base_logits(session: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of float32 NCHW ``images`` in [0, 1], computed in batches."""
    return session_logits(session, images, batch_size)


def base_predict(session: Any, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
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
