"""The Ray actor of :mod:`certification.ray_backend`: one smoothed classifier of the model bytes the driver hashed.

Its certificates are those of the single-process engine (:meth:`SmoothedClassifier.iter_certify`, the same noise
streams (seed, index, phase)), with or without a lighting covariance.
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from certification.errors import InputError
from certification.fileio import sha256_bytes
from certification.lighting import covariance_from_record
from certification.noise_sampling import noise_kernels
from certification.smoothing import CertifyResult, SmoothedClassifier


class CertifyWorker:
    """A Ray actor's state: one smoothed classifier (one onnxruntime session, one noise pool) of the model bytes.

    Threads come from the CPUs Ray assigned to this actor, not from the host's core count: onnxruntime gets half,
    rounded up, and the noise the rest (at least one); with one CPU noise and inference take turns on one thread.
    Explicit ``threads``/``noise_threads`` override that. Every call carries ``model_box``, [object ref of the
    model bytes], and the model is loaded on the first call of a process: a worker restarted after a crash
    reloads it from the retried call (constructor arguments stay small values, which Ray can always replay).
    ``lighting``: the driver's covariance record (:meth:`LightingCovariance.to_record`; None: isotropic), rebuilt
    here, so every example draws the noise of the local backend's streams and its certificate is the same."""

    def __init__(self, model_name: str, model_sha256: str, sigma: float, batch_size: int, provider: str,
                 threads: int | None, noise_threads: int | None, lighting: dict[str, Any] | None = None) -> None:
        self.model_name, self.model_sha256, self.lighting = model_name, model_sha256, lighting
        self.sigma, self.batch_size, self.provider = sigma, batch_size, provider
        self.threads, self.noise_threads = threads, noise_threads
        self.cores = max(1, int(_assigned_cpus()))
        self.classifier: SmoothedClassifier | None = None

    def _load(self, model_box: list[Any]) -> SmoothedClassifier:
        if self.classifier is not None:
            return self.classifier
        import ray

        model = ray.get(model_box[0])
        if sha256_bytes(model) != self.model_sha256:
            raise InputError(f"{self.model_name}: the model bytes a Ray worker received do not hash to "
                             f"{self.model_sha256[:12]}...")
        threads = self.threads if self.threads is not None else max(1, (self.cores + 1) // 2)
        noise_threads = self.noise_threads if self.noise_threads is not None else max(1, self.cores - threads)
        with tempfile.TemporaryDirectory(prefix="smoothcert-ray-") as folder:
            path = Path(folder) / Path(self.model_name).name
            path.write_bytes(model)
            serial = self.noise_threads is None and self.cores == 1  # one core: draw and classify in turn
            classifier = SmoothedClassifier.from_onnx(path, self.sigma, batch_size=self.batch_size, threads=threads,
                                                      provider=self.provider, noise_threads=noise_threads,
                                                      prefetch=0 if serial else 2,
                                                      lighting=covariance_from_record(self.lighting, self.sigma))
        self.classifier = classifier
        return classifier

    def info(self, model_box: list[Any]) -> dict[str, Any]:
        """Load the model; pid, node, CPUs, and the runtime block and noise kernels of this worker (as a local
        run records them)."""
        classifier = self._load(model_box)
        runtime = classifier.runtime_record()
        runtime["noise_prefetch"] = classifier.prefetch
        return {"pid": os.getpid(), "node": socket.gethostname(), "cpus": self.cores, "runtime": runtime,
                "noise_kernels": noise_kernels()}

    def certify(self, model_box: list[Any], images: np.ndarray, labels: np.ndarray, indices: np.ndarray, n0: int,
                n: int, alpha: float, seed: int) -> tuple[int, list[CertifyResult]]:
        """CERTIFY the task's examples (noise index ``indices[j]`` for image j); returns (pid, results)."""
        classifier = self._load(model_box)
        return os.getpid(), list(classifier.iter_certify(images, labels, n0, n, alpha, seed, indices=indices))


def _assigned_cpus() -> float:
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
