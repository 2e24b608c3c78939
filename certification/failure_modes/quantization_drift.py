"""Drift between the float (fp32) export and the shipped int8 artifact, seen through the smoothed classifier.

Only meaningful when the shipped ``models/model.onnx`` is int8; the certificate is about the int8 artifact
(the one certified), and this analysis shows how far its behaviour under noise is from the float model's.

* ``agreement_under_noise``: share of (example, noise draw) pairs where fp32 and int8 base predictions agree,
  on x + N(0, sigma^2 I) (the only inputs the smoothed classifier ever feeds them), ``noise_samples`` draws per
  example seeded by (seed, test index); ``agreement_clean`` on the unchanged images.
* Both artifacts are certified on the same examples with the same (reduced) n0, n, alpha and seed, hence the
  same noise: ``curve`` gives certified accuracy of each at every radius and ``difference`` = int8 - fp32;
  ``prediction_agreement`` is the share of examples whose certified class (or abstention) is the same.
These certificates use a reduced n and are NOT the certify stage's numbers.

JSON (key ``quantization``; null when there is no int8 artifact)::

    {"fp32_sha256", "int8_sha256", "n_examples", "noise_samples", "agreement_under_noise",
     "agreement_under_noise_lower", "agreement_clean", "certify": {"n0", "n", "alpha", "seed"},
     "prediction_agreement", "mean_abs_radius_difference",
     "curve": [{"radius", "fp32", "int8", "difference"}]}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from certification.dataset_bounds import proportion_bound
from certification.failure_modes.onnx_base import base_predict
from certification.onnx_model import open_session
from certification.fileio import sha256_file
from certification.smoothing import SmoothedClassifier


@dataclass(frozen=True)
class QuantizationReport:
    fp32_sha256: str
    int8_sha256: str
    n_examples: int
    noise_samples: int
    agreement_under_noise: float
    agreement_under_noise_lower: float
    agreement_clean: float
    certify: dict[str, float]
    prediction_agreement: float
    mean_abs_radius_difference: float
    curve: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def noise_agreement(
    fp32_path: Path, int8_path: Path, images: np.ndarray, indices: np.ndarray, sigma: float, draws: int, seed: int, threads: int | None
) -> tuple[int, int, float]:
    """(agreeing pairs, pairs, clean agreement) of fp32 and int8 base predictions under Gaussian noise."""
    fp32, int8 = open_session(fp32_path, threads, "cpu"), open_session(int8_path, threads, "cpu")
    agree = 0
    for image, index in zip(images, indices):
        rng = np.random.default_rng([int(seed), int(index)])
        noisy = (image[None] + np.float32(sigma) * rng.standard_normal((draws, *image.shape), dtype=np.float32)).astype(np.float32)
        agree += int((base_predict(fp32, noisy) == base_predict(int8, noisy)).sum())
    clean = float((base_predict(fp32, images) == base_predict(int8, images)).mean())
    return agree, draws * len(images), clean


def quantization_drift(
    fp32_path: str | Path,
    int8_path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    sigma: float,
    radii: Sequence[float],
    noise_samples: int,
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    confidence: float,
    threads: int | None = None,
) -> QuantizationReport:
    """Compare fp32 and int8 artifacts on float32 NCHW ``images`` (test indices ``indices``)."""
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    agree, pairs, clean = noise_agreement(fp32_path, int8_path, images, indices, sigma, noise_samples, seed, threads)
    bound = proportion_bound(agree, pairs, confidence)
    results = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        classifier = SmoothedClassifier.from_onnx(path, sigma, batch_size=max(n0, min(n, 1000)), threads=threads, provider="cpu")
        results[name] = classifier.certify_many(images, labels, n0, n, alpha, seed, indices)
    predictions = {k: np.array([r.prediction for r in v]) for k, v in results.items()}
    radius = {k: np.array([r.radius for r in v]) for k, v in results.items()}
    correct = {k: predictions[k] == labels for k in results}
    curve = []
    for r in radii:
        rate = {k: float((correct[k] & (radius[k] >= r)).mean()) for k in results}
        curve.append({"radius": float(r), "fp32": rate["fp32"], "int8": rate["int8"], "difference": rate["int8"] - rate["fp32"]})
    return QuantizationReport(
        fp32_sha256=sha256_file(fp32_path),
        int8_sha256=sha256_file(int8_path),
        n_examples=len(images),
        noise_samples=int(noise_samples),
        agreement_under_noise=bound.estimate,
        agreement_under_noise_lower=bound.lower,
        agreement_clean=clean,
        certify={"n0": int(n0), "n": int(n), "alpha": float(alpha), "seed": int(seed)},
        prediction_agreement=float((predictions["fp32"] == predictions["int8"]).mean()),
        mean_abs_radius_difference=float(np.abs(radius["fp32"] - radius["int8"]).mean()),
        curve=curve,
    )
