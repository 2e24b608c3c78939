"""The smoothed predictor for the device: one ONNX graph that returns class counts over k noisy copies of an image.

:func:`build_smoothed_graph` wraps a base classifier (one float32 NCHW input in [0, 1], one (N, K) score output) as

    image [1, C, H, W] -> Expand to [k, C, H, W] -> + RandomNormalLike(mean 0, scale sigma) -> base classifier
    -> ArgMax (lowest index on ties, as numpy) -> OneHot -> ReduceSum over the k copies -> counts [K] (int64)

(with a lighting covariance, the noise is N(0, sigma^2 I + tau_norm^2 V^T V), certification's lighting noise:
:mod:`certification.lighting_graph`) and stores ``k``, ``sigma`` and ``alpha`` (and the base model's SHA-256) as
``metadata_props``, so device code needs only onnxruntime and the PREDICT rule
(:func:`certification.smoothing.predict_from_counts`: a two-sided binomial test on the top two counts, abstain when
p > alpha). Sigma is in [0, 1]-pixel L2 units; the noise is not clipped.

What the noise is (measured with onnxruntime 1.32 and read in its source, ``core/providers/cpu/generator/random.h``):
onnxruntime's CPU kernel draws it with ``std::normal_distribution`` on ``std::default_random_engine`` (libstdc++:
``minstd_rand0``, a 31-bit linear congruential generator), one generator per node, advanced by every call, so
every call returns fresh noise. Without a ``seed`` attribute (the default here) the generator's seed is a process
seed (from the clock at start-up, or ``onnxruntime.set_seed(s)``) plus the node index: every session opened in one
process starts the same sequence, and within one session the sequence repeats after about 2^31 uniforms (about
5,500 calls at k = 100, 550 at k = 1000, on 3 x 32 x 32 images). With ``seed`` the sequence is the same for every session, in every
process. This is not the certified noise (:mod:`certification.noise_sampling`: PCG64, per-example streams): the
graph's answers agree with the library's PREDICT only in distribution, which the tests check against the analytic
truth. Execution providers without a RandomNormalLike kernel fall back to the CPU one (onnxruntime partitions the
graph) or refuse the model; only the CPU provider was checked. The honest alternative, recorded in the metadata key
``noise_alternative``, is the library's own PREDICT (``smoothcert predict``), whose noise comes from numpy's PCG64.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from certification.errors import InputError
from certification.fileio import atomic_output, sha256_file
from certification.lighting import LightingCovariance
from certification.lighting_graph import (LIGHTING_DESCRIPTION, LIGHTING_KEY, check_graph_lighting, lighting_from_metadata,
                                          lighting_metadata, lighting_nodes)
from certification.onnx_layout import load_onnx_artifact
from certification.smoothing import check_sigma_and_batch

#: Names of the smoothed graph's input and output.
IMAGE_INPUT = "image"
COUNTS_OUTPUT = "counts"
#: Prefix given to the base classifier's node and value names inside the smoothed graph.
BASE_PREFIX = "base/"
NOISE_DESCRIPTION = ("onnxruntime RandomNormalLike (CPU kernel: std::normal_distribution on std::default_random_engine, "
                     "libstdc++ minstd_rand0); fresh noise every call; no seed attribute: the seed is onnxruntime's "
                     "process seed + node index (clock at start-up, or onnxruntime.set_seed), so every session in one "
                     "process starts the same sequence; only the CPU execution provider was checked")
NOISE_ALTERNATIVE = ("smoothcert predict: PREDICT of the base model with numpy PCG64 noise seeded per example "
                     "(certification/noise_sampling.py), the generator the certificate used")


@dataclass(frozen=True)
class SmoothedGraph:
    """What :func:`build_smoothed_graph` wrote: the file, its SHA-256 and its metadata (all strings, as stored)."""

    path: Path
    sha256: str
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path.as_posix(), "sha256": self.sha256, "metadata": dict(self.metadata)}


def check_k(k: Any) -> int:
    """k (noisy copies per image) as an int; InputError unless it is an integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k (noisy copies per image) must be an integer of at least 1, got {k!r}")
    return int(k)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < float(alpha) < 0.5:
        raise InputError(f"alpha must lie in (0, 0.5), got {alpha!r}; use e.g. 0.001")
    return float(alpha)


def base_input_chw(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(C, H, W) of the base classifier at ``path`` (the image shape a lighting covariance of its graph needs)."""
    return _base_shape(Path(path), None)[0]


def _base_shape(path: Path, model: Any) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) and K of the base classifier, checked by opening it as the library does."""
    from certification.onnx_model import OnnxClassifier

    classifier = OnnxClassifier(path, threads=1, provider="cpu")
    if classifier.adaptation.steps:
        raise InputError(f"{path}: the input needs adapting ({classifier.adaptation.steps[0]}); export it as float32 "
                         "NCHW [batch, C, H, W] with a dynamic batch axis first")
    if any(d is None for d in classifier.input_chw):
        raise InputError(f"{path}: input (C, H, W) = {classifier.input_chw} is not fixed; export with a fixed image size")
    chw = tuple(int(d) for d in classifier.input_chw)  # type: ignore[arg-type]
    return chw, classifier.num_classes  # type: ignore[return-value]


def build_smoothed_graph(base_path: str | os.PathLike[str], out_path: str | os.PathLike[str], k: int, sigma: float,
                         alpha: float, seed: int | None = None,
                         lighting: LightingCovariance | None = None) -> SmoothedGraph:
    """Write the smoothed predictor of the base classifier at ``base_path`` to ``out_path`` (atomically).

    One call returns int64 counts [K] of the base classifier's labels over ``k`` copies of the image, each with
    independent N(0, sigma^2 I) noise drawn inside the graph (see the module docstring for the generator).
    ``lighting`` (a :class:`certification.lighting.LightingCovariance` of the model's image shape and this sigma): the
    copies' noise is N(0, sigma^2 I + tau_norm^2 V^T V) instead, the distribution certification draws
    (:mod:`certification.lighting_graph`), and the metadata records the covariance (key ``lighting``); None or
    ``none`` directions: the isotropic graph, byte for byte as before.
    ``seed`` (default None: no seed attribute) fixes the in-graph generator for reproducible tests only. Bad input
    (a file that is not ONNX, two inputs, k < 1, sigma or alpha out of range) is a one-line InputError and writes
    nothing."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    k, alpha = check_k(k), _check_alpha(alpha)
    check_sigma_and_batch(sigma, 1)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
    base_path, out_path = Path(base_path), Path(out_path)
    base = load_onnx_artifact(base_path)
    (c, h, w), num_classes = _base_shape(base_path, base)
    lighting = check_graph_lighting(lighting, float(sigma), (c, h, w))
    base = compose.add_prefix(base, prefix=BASE_PREFIX)
    base_input, base_output = base.graph.input[0].name, base.graph.output[0].name
    opsets = {o.domain: o.version for o in base.opset_import}
    if opsets.get("", 0) < 13:
        raise InputError(f"{base_path}: opset {opsets.get('', 0)} is below 13; re-export with export.opset >= 13")

    noise_attrs: dict[str, Any] = {"dtype": TensorProto.FLOAT, "mean": 0.0, "scale": float(sigma)}
    if seed is not None:
        noise_attrs["seed"] = float(seed)
    nodes = [helper.make_node("Expand", [IMAGE_INPUT, "copies_shape"], ["copies"]),
             helper.make_node("RandomNormalLike", ["copies"], ["noise"], **noise_attrs),
             helper.make_node("Add", ["copies", "noise"], ["noisy" if lighting is None else "noisy_isotropic"])]
    initializers = [numpy_helper.from_array(np.array([k, 1, 1, 1], dtype=np.int64), "copies_shape")]
    if lighting is not None:
        extra_nodes, extra_initializers = lighting_nodes(lighting, k, "noisy_isotropic", "noisy", seed)
        nodes, initializers = nodes + extra_nodes, initializers + extra_initializers
    pre = helper.make_graph(
        nodes, "noisy_copies",
        [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("noisy", TensorProto.FLOAT, [k, c, h, w])],
        initializer=initializers)
    post = helper.make_graph(
        [helper.make_node("ArgMax", ["scores"], ["labels"], axis=1, keepdims=0, select_last_index=0),
         helper.make_node("OneHot", ["labels", "depth", "one_hot_values"], ["votes"], axis=-1),
         helper.make_node("ReduceSum", ["votes", "copy_axis"], [COUNTS_OUTPUT], keepdims=0)],
        "vote_counts",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [k, num_classes])],
        [helper.make_tensor_value_info(COUNTS_OUTPUT, TensorProto.INT64, [num_classes])],
        initializer=[numpy_helper.from_array(np.array([num_classes], dtype=np.int64), "depth"),
                     numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "one_hot_values"),
                     numpy_helper.from_array(np.array([0], dtype=np.int64), "copy_axis")])
    opset_imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]

    def model_of(graph: Any) -> Any:
        made = helper.make_model(graph, opset_imports=opset_imports)
        made.ir_version = base.ir_version
        return made

    merged = compose.merge_models(model_of(pre), base, io_map=[("noisy", base_input)])
    merged = compose.merge_models(merged, model_of(post), io_map=[(base_output, "scores")])
    merged.graph.name = "smoothed_predictor"
    metadata = {
        "k": str(k), "sigma": repr(float(sigma)), "alpha": repr(alpha),
        "input_range": "[0,1]", "input_layout": "NCHW",
        "output": f"{COUNTS_OUTPUT}: int64 [{num_classes}] base-classifier labels over k noisy copies",
        "predict_rule": "two-sided binomial test (p = 1/2) on the top two counts; abstain when p-value > alpha",
        "base_model_sha256": sha256_file(base_path),
        "noise": NOISE_DESCRIPTION + ("" if lighting is None else LIGHTING_DESCRIPTION)
                 + ("" if seed is None else f"; THIS FILE FIXES seed = {int(seed)} (tests only)"),
        "noise_alternative": NOISE_ALTERNATIVE,
    }
    if lighting is not None:
        metadata[LIGHTING_KEY] = lighting_metadata(lighting)
    del merged.metadata_props[:]
    for key, value in metadata.items():
        merged.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(merged)
    with atomic_output(out_path, suffix=".onnx") as tmp:
        onnx.save(merged, str(tmp))
    return SmoothedGraph(out_path, sha256_file(out_path), metadata)


def read_smoothed_metadata(path: str | os.PathLike[str]) -> tuple[int, float, float]:
    """(k, sigma, alpha) from a smoothed graph's metadata_props; InputError when the file lacks them."""
    return _read_metadata(path)[:3]  # type: ignore[return-value]


def read_smoothed_lighting(path: str | os.PathLike[str]) -> LightingCovariance | None:
    """The lighting covariance a smoothed graph's noise has (metadata ``lighting``); None for an isotropic graph.
    InputError when the file is not a smoothed predictor or the record is broken."""
    return _read_metadata(path)[3]


def _read_metadata(path: str | os.PathLike[str]) -> tuple[int, float, float, LightingCovariance | None]:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: smoothed model not found; run the export stage (models/smoothed.onnx)")
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        k, sigma, alpha = int(props["k"]), float(props["sigma"]), float(props["alpha"])
    except Exception:  # noqa: BLE001 - not ONNX, or keys missing or not numbers
        raise InputError(f"{path}: not a smoothed predictor (metadata k, sigma, alpha missing); build it with "
                         "certification.smoothed_graph.build_smoothed_graph") from None
    if not (k >= 1 and math.isfinite(sigma) and 0 < alpha < 0.5):
        raise InputError(f"{path}: metadata k={k}, sigma={sigma}, alpha={alpha} out of range")
    return k, sigma, alpha, lighting_from_metadata(props, sigma, str(path))
