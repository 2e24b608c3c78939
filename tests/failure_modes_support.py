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

from certification.certify_run import result_record
from certification.onnx_export import export_onnx
from certification.smoothing import SmoothedClassifier

CHW = (3, 8, 8)
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
                    alpha: float, seed: int, indices: np.ndarray | None = None) -> list[dict]:
    """Real certificates from the engine, in the results/certify.jsonl schema."""
    classifier = SmoothedClassifier.from_onnx(onnx_path, sigma, batch_size=1000, threads=1, provider="cpu")
    results = classifier.certify_many(images_nchw, labels, n0, n, alpha, seed, indices)
    return [result_record(r, alpha, sigma, seed) for r in results]
