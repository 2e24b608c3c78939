"""Import a user's ONNX classifier as the shipped artifact, in place of training and export.

:func:`import_model_files` copies the supplied file byte for byte to the shipped path (so its SHA-256 is the
supplier's), opens it through :func:`certification.onnx_model.open_session` (which checks and, where safe, adapts
the input contract: NHWC, fixed batch, declared units; see :mod:`certification.onnx_layout`), checks that it scores
the declared classes on the validation split's images, measures its onnxruntime accuracy there (clean and under one
seeded Gaussian draw at the declared sigma) and writes nothing unless every check passed.

The model card it returns (``models/model.json``) has the keys of the export stage's card
(:func:`certification.onnx_export.model_card`) that describe the artifact, plus ``supplied``:

* ``path`` (the shipped copy, relative), ``sha256`` and ``fp32_sha256`` (both the supplied file's),
  ``opset`` (the file's ai.onnx opset), ``onnxruntime_version``, ``input_name``, ``output_name``,
  ``input_shape`` ([null, C, H, W] as certified, after any adaptation), ``input_range`` ([0, 1]: the contract),
  ``class_names`` and ``malignant_classes`` (as declared in params ``model``), ``parameters`` (elements of the
  graph's initializers), ``flops`` and ``torch_version`` (null: not known for a supplied graph), ``quantization``
  (``int8 (supplied)`` when the graph holds QuantizeLinear nodes, else ``none``), ``architecture`` (``supplied ONNX
  graph`` with its node count), ``normalization`` (declared to be inside the graph), ``train_sigma`` (the sigma the
  supplier declares the model was trained for, or null), ``platform`` (``import``: where it was imported);
* ``supplied``: ``source`` (the path as given in params ``model.path``), ``sha256``, ``trained_by_pipeline`` (always false) and
  ``input_adaptation`` (what :mod:`certification.onnx_layout` changed in memory, e.g. a prepended Transpose).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from certification.dataset_io import Split
from certification.errors import InputError, MissingInputError
from certification.export_run import ORT_THREADS, ort_accuracy
from certification.fileio import sha256_file
from certification.onnx_model import adaptation_of, open_session, session_logits
from certification.platform_info import platform_record

SUPPLIED_QUANTIZED = "int8 (supplied)"


@dataclass(frozen=True)
class SuppliedModel:
    """params ``model``: the user's file, its classes in output order, malignant classes and declared sigma."""

    path: Path
    class_names: Sequence[str]
    malignant_classes: Sequence[str]
    sigma: float | None
    source: str = ""  # how the user named the file (params model.path); default: ``path``


@dataclass(frozen=True)
class ImportOutcome:
    card: dict[str, Any]
    metrics: dict[str, Any]


def _graph_facts(path: Path) -> dict[str, Any]:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf decode errors of several types
        raise InputError(f"{path}: not an ONNX model ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    ops = {node.op_type for node in model.graph.node}
    return {"opset": opset, "nodes": len(model.graph.node),
            "parameters": int(sum(int(np.prod(t.dims)) for t in model.graph.initializer)),
            "quantized": bool(ops & {"QuantizeLinear", "QLinearConv", "QLinearMatMul"}),
            "input_name": model.graph.input[0].name if model.graph.input else "input",
            "output_name": model.graph.output[0].name if model.graph.output else "output"}


def import_model_files(supplied: SuppliedModel, val: Split, shipped: Path, shipped_relative: str, seed: int) -> ImportOutcome:
    """Copy ``supplied.path`` to ``shipped`` after its checks pass (one-line InputError otherwise, nothing written);
    return its model card and the import metrics (metrics/export.json of this route)."""
    source = Path(supplied.path)
    if not source.is_file():
        raise MissingInputError(f"{source}: model.path names no file; give the path of your .onnx model")
    names = list(supplied.class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(f"model.class_names must list at least two distinct classes in the model's output order, got {names}")
    unknown = [c for c in supplied.malignant_classes if c not in names]
    if unknown or not supplied.malignant_classes:
        raise InputError(f"model.malignant_classes must name at least one of {names}, got {list(supplied.malignant_classes)}")
    if supplied.sigma is not None and not supplied.sigma > 0:
        raise InputError(f"model.sigma must be positive or null, got {supplied.sigma}")
    facts = _graph_facts(source)
    shipped.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=shipped.parent, prefix=".import-") as work:
        copy = Path(work) / shipped.name
        shutil.copyfile(source, copy)
        session = open_session(copy, ORT_THREADS, "cpu")
        adaptation = adaptation_of(session)
        declared = tuple(d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:])
        if any(d is not None and d != v for d, v in zip(declared, val.image_shape_chw)):
            raise InputError(f"{source}: the model takes (C, H, W) = {declared} but the data are {val.image_shape_chw}; "
                             "set data.image_size (and the data's channels) to the model's input size")
        x_val = val.model_input()
        scores = session_logits(session, x_val[:2])
        if scores.ndim != 2 or scores.shape[1] != len(names):
            raise InputError(f"{source}: scores have shape {list(scores.shape)} for 2 images, but model.class_names "
                             f"declares {len(names)} classes; list the classes in the model's output order")
        sigma = float(supplied.sigma) if supplied.sigma is not None else 0.0
        accuracy = ort_accuracy(copy, x_val, val.labels, sigma, seed)
        digest = sha256_file(copy)
        card = {
            "path": shipped_relative, "sha256": digest, "fp32_sha256": digest, "opset": facts["opset"],
            "onnxruntime_version": __import__("onnxruntime").__version__, "torch_version": None,
            "input_name": facts["input_name"], "output_name": facts["output_name"],
            "input_shape": [None, *val.image_shape_chw], "input_range": [0, 1], "class_names": names,
            "malignant_classes": list(supplied.malignant_classes),
            "normalization": {"mean": "inside the supplied graph (declared)", "std": "inside the supplied graph (declared)"},
            "parameters": facts["parameters"], "flops": None,
            "quantization": SUPPLIED_QUANTIZED if facts["quantized"] else "none",
            "architecture": f"supplied ONNX graph ({facts['nodes']} nodes)",
            "train_sigma": None if supplied.sigma is None else float(supplied.sigma),
            "platform": {"import": platform_record()},
            "supplied": {"source": supplied.source or source.as_posix(), "sha256": digest, "trained_by_pipeline": False,
                         "input_adaptation": list(adaptation.steps)},
        }
        metrics = {"supplied": True, "model_sha256": digest, "source": supplied.source or source.as_posix(), "onnxruntime": accuracy,
                   "input_adaptation": list(adaptation.steps), "ort_threads": ORT_THREADS}
        os.replace(copy, shipped)
    return ImportOutcome(card, metrics)
