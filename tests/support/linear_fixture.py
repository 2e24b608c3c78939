"""Fixtures for the failure-mode tests: a linear two-class model whose smoothed robustness is known exactly.

The base classifier is f(x) = 1[u.x > t] with a unit vector u. Gaussian smoothing leaves it unchanged
(P(u.(x+e) > t) = Phi((u.x - t)/sigma) > 1/2 iff u.x > t), so the smoothed classifier's true L2 robust radius
at x is its margin |u.x - t| (away from the [0,1] box). Images are 3x8x8, built as 0.5 + margin * u + a small
perturbation orthogonal to u, stored as uint8 like the pipeline's data.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from certification.certify_run import record_from_result
from certification.records import CertifyRecord
from certification.onnx_export import export_onnx
from certification.smoothing import SmoothedClassifier

CHW = (3, 8, 8)
#: Provenance of records made without files (hand-made rows name a stand-in model and split).
MODEL_SHA, DATA_SHA = "m" * 64, "d" * 64
DIM = 3 * 8 * 8


@dataclass
class LinearFixture:
    model: torch.nn.Module
    onnx_path: Path
    u: np.ndarray  # unit normal, flattened CHW
    threshold: float

    def margin(self, images_nchw: np.ndarray) -> np.ndarray:
        """Signed distance to the decision boundary (positive: class 1)."""
        return images_nchw.reshape(len(images_nchw), -1).astype(np.float64) @ self.u - self.threshold


@functools.cache
def shared_linear_fixture(seed: int = 0) -> LinearFixture:
    """One export per test session (exporting takes seconds); the files live in a private temp folder."""
    directory = Path(tempfile.mkdtemp(prefix="failure-modes-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return linear_fixture(directory, seed)


def linear_fixture(directory: Path, seed: int = 0, scale: float = 40.0) -> LinearFixture:
    rng = np.random.default_rng(seed)
    u = np.abs(rng.standard_normal(DIM)) + 0.5  # spread over pixels, so box clipping rarely binds
    u *= rng.choice([-1.0, 1.0], size=DIM)
    u /= np.linalg.norm(u)
    threshold = float(u @ np.full(DIM, 0.5))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(DIM, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([np.zeros(DIM), scale * u]), dtype=torch.float32))
        model[1].bias.copy_(torch.tensor([0.0, -scale * threshold], dtype=torch.float32))
    model.eval()
    path = Path(directory) / "linear.onnx"
    export_onnx(model, path, CHW, 18)
    return LinearFixture(model, path, u, threshold)


def make_split(fixture: LinearFixture, margins: np.ndarray, labels: np.ndarray, seed: int, fitzpatrick: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays of a test split (uint8 NHWC) whose images sit at the given signed margins (before 8-bit rounding)."""
    rng = np.random.default_rng(seed)
    n = len(margins)
    noise = rng.uniform(-0.1, 0.1, size=(n, DIM))
    noise -= np.outer(noise @ fixture.u, fixture.u)
    flat = 0.5 + np.outer(margins, fixture.u) + noise
    images = np.clip(np.rint(flat.reshape(n, *CHW) * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return {
        "images": np.ascontiguousarray(images),
        "labels": labels.astype(np.int64),
        "fitzpatrick": (fitzpatrick if fitzpatrick is not None else rng.integers(1, 7, size=n)).astype(np.int64),
        "hair": rng.uniform(0, 1, size=n).astype(np.float32),
        "illumination": rng.uniform(0, 1, size=n).astype(np.float32),
    }


def nchw(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The split's images as the models see them: float32 NCHW in [0, 1]."""
    return np.ascontiguousarray(arrays["images"].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def certify_records(onnx_path: Path, images_nchw: np.ndarray, labels: np.ndarray, sigma: float, n0: int, n: int,
                    alpha: float, seed: int, indices: np.ndarray | None = None,
                    data_sha256: str = DATA_SHA, lighting=None) -> list[CertifyRecord]:
    """Real certificates from the engine, in the results/certify.jsonl schema (``lighting``: a
    :class:`certification.lighting.LightingCovariance` to smooth with; its rows carry ``mahalanobis_radius``)."""
    classifier = SmoothedClassifier.from_onnx(onnx_path, sigma, batch_size=1000, threads=1, provider="cpu", lighting=lighting)
    results = classifier.certify_many(images_nchw, labels, n0, n, alpha, seed, indices)
    return [record_from_result(r, alpha, sigma, seed, model_sha256=classifier.base_classifier.sha256,
                               data_sha256=data_sha256, mahalanobis=lighting is not None) for r in results]


def make_record(index: int = 0, label: int = 0, prediction: int = 0, radius: float = 0.1, *, alpha: float = 0.01,
                sigma: float = 0.25, seed: int = 3, n0: int = 10, n: int = 100) -> CertifyRecord:
    """A well-formed certify record with the given answer (counts consistent with it)."""
    abstained = prediction == -1
    return CertifyRecord(index=index, label=label, prediction=prediction, correct=prediction == label and not abstained,
                         radius=0.0 if abstained else radius, n0=n0, n=n, n_a=n // 2 if abstained else n, p_lower=0.9,
                         alpha=alpha, sigma=sigma, seed=seed, seconds=0.01, counts_selection=[n0], counts_estimation=[n],
                         model_sha256=MODEL_SHA, data_sha256=DATA_SHA)


def write_certify_summary(path: Path, records: list[CertifyRecord], model: Path, data: Path, radii: list[float],
                          confidence: float = 0.95, class_names: list[str] | None = None, lighting=None) -> dict:
    """metrics/certify.json for ``records``, written by the pipeline's own producer."""
    from certification.certify_run import noise_record
    from certification.fileio import sha256_file
    from certification.platform_info import platform_record
    from certification.summary import certify_metrics, write_certify_metrics

    with np.load(data) as npz:
        total, chw = int(npz["labels"].shape[0]), tuple(np.asarray(npz["images"]).shape[1:])
    shape = (chw[2], chw[0], chw[1]) if chw[-1] in (1, 3) else chw
    document = certify_metrics(
        records, model={"path": model.name, "sha256": sha256_file(model)},
        data={"path": data.name, "sha256": sha256_file(data), "n_examples_total": total}, max_examples=0, radii=radii,
        confidence=confidence, class_names=class_names,
        runtime={"provider": "CPUExecutionProvider", "intra_op_num_threads": 1, "noise_threads": 1,
                 "platform": platform_record()},
        noise=noise_record(records[0].n0 + records[0].n, shape, lighting))
    write_certify_metrics(path, document)
    return document
