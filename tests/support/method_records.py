"""Hand-made training-method benchmark records with known outcomes of the target rule."""
from __future__ import annotations

import hashlib
from typing import Any

from certification.method_benchmark import CleanAccuracy, MethodRecord, MethodRow, RadiusPoint, Settings

TRIALS = 200
SETTINGS = Settings(epochs=2, n0=10, n=100, alpha=0.001, confidence=0.95, examples=TRIALS, train_seed=1, certify_seed=3,
                    threads=1, gate_radius=0.25)
HYPER = {"gaussian": {}, "consistency": {"m": 2, "lambda": 5.0, "eta": 0.5},
         "macer": {"k": 2, "lambda": 12.0, "gamma": 8.0, "beta": 16.0}}


def point(value: float, radius: float = 0.25, n: int = TRIALS) -> RadiusPoint:
    return RadiusPoint(radius, value, max(0.0, value - 0.06), round(value * n))


def row(method: str, sigma: float = 0.25, *, acr: float = 0.40, clean: float = 0.90, melanoma: float = 0.60,
        bcc: float = 0.50, seconds: float = 100.0, sha: str | None = None, epochs: int = 2,
        hyper: dict[str, Any] | None = None) -> MethodRow:
    """One row; clean accuracy as successes / 200 (``clean`` must be a multiple of 1/200)."""
    return MethodRow(sigma=sigma, method=method, hyperparameters=dict(HYPER[method] if hyper is None else hyper),
                     epochs=epochs, best_epoch=epochs, train_seconds=seconds, certify_seconds=10.0, n_examples=TRIALS,
                     model_sha256=sha or hashlib.sha256(f"{method} {sigma}".encode()).hexdigest(),
                     certified_at_r_star=point(0.7), certified_at_0_5=point(0.5, 0.5), acr=acr,
                     clean_accuracy=CleanAccuracy(clean, clean - 0.05, round(clean * TRIALS), TRIALS),
                     recall_at_r_star={"melanoma": point(melanoma, n=50), "basal_cell_carcinoma": point(bcc, n=30)})


def record(*rows: MethodRow, data: dict[str, str] | None = None, partial: bool = False) -> MethodRecord:
    return MethodRecord(command="benchmarks/training_methods.py --test", date_utc="2026-12-03T07:00:00Z", settings=SETTINGS,
                        data_sha256=data or {"test": "1" * 64, "train": "2" * 64, "val": "3" * 64},
                        params_hyperparameters=dict(HYPER), rows=tuple(rows), partial=partial)
