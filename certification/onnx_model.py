"""The base classifier f: an exported ONNX model run by onnxruntime.

The certificate is about the exact artifact that ships, executed by onnxruntime, never the torch model it came
from. Inputs are float32 NCHW images in [0, 1] (normalisation lives inside the graph); the single output is an
(N, K) array of class scores whose argmax is the base classifier's label.

Session options are pinned (intra-op threads, one inter-op thread, sequential execution, full graph
optimisation) and recorded in :attr:`OnnxClassifier.session_config`, so a run can be reproduced. The CUDA
execution provider is used when onnxruntime offers it and ``provider="auto"``; the CPU provider is the default
path and needs no GPU.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from certification.errors import InputError, MissingInputError, ParameterError
from certification.fileio import sha256_file
from certification.onnx_layout import EXPECTED, Adaptation, check_units, describe_input, symbolic_batch, transpose_nhwc_input

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

#: Options of onnxruntime's CUDA provider. cuDNN's exhaustive algorithm search (onnxruntime's default) runs again
#: whenever the batch shape changes, and CERTIFY alternates shapes (n0, batch_size, remainders), which made the
#: exhaustive search several times slower than the heuristic one (figures in benchmarks/RESULTS.md).
CUDA_PROVIDER_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}


def provider_list(chosen: str) -> list[Any]:
    """The ``providers`` argument of the session for the chosen provider: CPU alone, or CUDA (with
    :data:`CUDA_PROVIDER_OPTIONS`) falling back to the CPU for any node CUDA does not implement."""
    if chosen == PROVIDERS["cuda"]:
        return [(chosen, dict(CUDA_PROVIDER_OPTIONS)), PROVIDERS["cpu"]]
    return [chosen]


def default_threads() -> int:
    """Intra-op threads when none are given: every CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int) -> Any:
    """Pinned onnxruntime session options: ``threads`` intra-op threads, one inter-op thread, sequential
    execution, full graph optimisation, warnings only. Recorded with results so runs are reproducible."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def _choose_provider(provider: str) -> str:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "auto":
        return PROVIDERS["cuda"] if PROVIDERS["cuda"] in available else PROVIDERS["cpu"]
    if provider not in PROVIDERS:
        raise InputError(f"unknown execution provider {provider!r}; use one of auto, {', '.join(PROVIDERS)}")
    if PROVIDERS[provider] not in available:
        raise InputError(f"onnxruntime here offers {', '.join(available)}, not {PROVIDERS[provider]}; use provider 'cpu'")
    return PROVIDERS[provider]


def _batch_is_free(session: Any, original: Any, where: str) -> bool:
    """True when ``session`` (batch axis made symbolic) scores a batch of two as ``original`` scores each alone."""
    shape = [d if isinstance(d, int) else 32 for d in session.get_inputs()[0].shape[1:]]
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    try:
        pair = session.run(None, {session.get_inputs()[0].name: x})[0]
        single = np.concatenate([original.run(None, {original.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(2)])
    except Exception:  # noqa: BLE001 - a graph that pins the batch (Reshape to [1,-1], ...) fails here
        return False
    return pair.shape == single.shape and bool(np.allclose(pair, single, rtol=1e-4, atol=1e-5))


def _adapt(path: Path, session: Any, make: Any) -> tuple[Any, Adaptation]:
    """The session for the model at ``path`` adapted to the input contract (see :mod:`certification.onnx_layout`)."""
    import onnx

    where = str(path)
    inputs = session.get_inputs()
    check_units(session.get_modelmeta().custom_metadata_map, where)
    if len(inputs) != 1 or len(inputs[0].shape or []) != 4:
        return session, Adaptation()  # OnnxClassifier names what is wrong
    layout = describe_input(inputs[0].name, inputs[0].shape, session.get_modelmeta().custom_metadata_map, where)
    adaptation = Adaptation()
    if layout.layout == "NCHW" and layout.fixed_batch is None:
        return session, adaptation
    model = onnx.load(str(path))
    if layout.layout == "NHWC":
        transpose_nhwc_input(model)
        adaptation.steps.append(f"input {list(layout.shape)} is NHWC: Transpose(0,2,3,1) prepended, the model takes NCHW")
    adapted = make(model.SerializeToString())
    if layout.fixed_batch is not None:
        fixed = adapted
        symbolic_batch(model)
        candidate = make(model.SerializeToString())
        if _batch_is_free(candidate, fixed, where):
            adapted = candidate
            adaptation.steps.append(f"fixed batch {layout.fixed_batch}: batch axis made symbolic (checked on a batch of 2)")
        elif layout.fixed_batch == 1:
            adaptation.loop_batch = True
            adaptation.steps.append("fixed batch 1 that the graph pins: one example per inference call")
        else:
            raise InputError(f"{where}: input '{layout.name}' has a fixed batch of {layout.fixed_batch} that the graph "
                             f"pins; export it with a dynamic batch axis (expected {EXPECTED})")
    return adapted, adaptation


def adaptation_of(session: Any) -> Adaptation:
    """The adaptations :func:`open_session` made for ``session`` (none for a model that meets the contract)."""
    return getattr(session, "smoothcert_adaptation", Adaptation())


def open_session(path: str | os.PathLike[str], threads: int | None = None, provider: str = "cpu", *,
                 spinning: bool = False, mem_pattern: bool = True, adapt: bool = True) -> Any:
    """The one way the library opens an ONNX model: an onnxruntime session with :func:`session_options`
    (``threads`` intra-op threads, default every usable core) on the chosen provider. One-line InputError when
    the file is missing or onnxruntime cannot load it. With ``adapt`` (the default) the input contract is checked
    and adapted (:mod:`certification.onnx_layout`); :func:`adaptation_of` tells what was changed."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: model file not found; run the export stage or pass an existing .onnx file")
    threads = default_threads() if threads is None else int(threads)
    if threads < 1:
        raise ParameterError(f"threads must be at least 1, got {threads}")
    options = session_options(threads)
    options.enable_mem_pattern = bool(mem_pattern)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    chosen = _choose_provider(provider)

    def make(model: str | bytes) -> Any:
        try:
            return ort.InferenceSession(model, sess_options=options, providers=provider_list(chosen))
        except Exception as exc:  # onnxruntime raises its own exception types for every load failure
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: not a loadable ONNX model ({first[:200]})") from None

    session = make(str(path))
    if not adapt:
        return session
    session, adaptation = _adapt(path, session, make)
    session.smoothcert_adaptation = adaptation
    return session


def session_logits(session: Any, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Scores of a one-input session for float32 NCHW ``x`` in [0, 1], computed in batches."""
    name = session.get_inputs()[0].name
    batch_size = 1 if adaptation_of(session).loop_batch else batch_size
    outputs = [session.run(None, {name: np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)})[0]
               for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(outputs, axis=0)


class OnnxClassifier:
    """A classifier f: float32 (N, C, H, W) in [0, 1] -> labels in [0, K), backed by an onnxruntime session."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, provider: str = "auto", spinning: bool = False) -> None:
        """``threads``: onnxruntime intra-op threads (default: every usable core); ``spinning``: let idle
        worker threads busy-wait (off by default: the noise thread of the sampler needs that CPU time)."""
        import onnxruntime as ort

        self.path = Path(path)
        threads = default_threads() if threads is None else int(threads)
        # Memory patterns are planned per input shape; CERTIFY runs batches of several sizes (n0, batch_size and
        # remainders), and per-shape patterns made the arena grow to ~3x the largest batch's needs.
        self.session = open_session(self.path, threads, provider, spinning=spinning, mem_pattern=False)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{self.path}: expected one input and one output, found {len(inputs)} inputs and {len(outputs)} outputs")
        self.input_name: str = inputs[0].name
        self.output_name: str = outputs[0].name
        if inputs[0].type != "tensor(float)":
            raise InputError(f"{self.path}: input '{self.input_name}' has type {inputs[0].type}; expected tensor(float): {EXPECTED}")
        declared = list(inputs[0].shape)
        if len(declared) != 4:
            raise InputError(f"{self.path}: input '{self.input_name}' has shape {declared}; expected {EXPECTED}")
        self.adaptation = adaptation_of(self.session)
        #: declared (C, H, W); an entry is None where the model leaves it symbolic
        self.input_chw: tuple[int | None, ...] = tuple(d if isinstance(d, int) else None for d in declared[1:])
        out_shape = list(outputs[0].shape or [])
        if out_shape and len(out_shape) != 2:
            raise InputError(f"{self.path}: output '{self.output_name}' has shape {out_shape}; expected (N, K) class scores")
        self.providers: list[str] = list(self.session.get_providers())
        if provider == "cuda" and self.providers[0] != PROVIDERS["cuda"]:
            # onnxruntime lists CUDA when its build has it, then runs on the CPU if CUDA will not start
            raise InputError(f"{self.path}: onnxruntime could not start {PROVIDERS['cuda']} (no visible GPU, or CUDA/cuDNN "
                             f"libraries missing) and would run on {self.providers[0]}; fix the CUDA setup or use provider 'cpu'")
        self.session_config: dict[str, Any] = {
            "provider": self.providers[0],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_allow_spinning": bool(spinning),
            "enable_mem_pattern": False,
            "onnxruntime_version": ort.__version__,
        }
        if self.adaptation.steps:
            self.session_config["input_adaptation"] = list(self.adaptation.steps)
        if self.providers[0] == PROVIDERS["cuda"]:
            self.session_config["cuda_provider_options"] = dict(CUDA_PROVIDER_OPTIONS)
        self._sha256: str | None = None
        self.num_classes: int = self._probe_num_classes(out_shape[1] if out_shape else None)

    @property
    def sha256(self) -> str:
        """SHA-256 of the model file: the name of the artifact being certified."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    def _probe_num_classes(self, declared: Any) -> int:
        """K from the declared output shape, confirmed by one run on a zero image."""
        chw = tuple(d if d is not None else 8 for d in self.input_chw)
        scores = self.logits(np.zeros((1, *chw), dtype=np.float32))
        k = int(scores.shape[1])
        if isinstance(declared, int) and declared != k:
            raise InputError(f"{self.path}: output declares {declared} classes but returns {k}")
        if k < 2:
            raise InputError(f"{self.path}: output has {k} class score(s); a classifier needs at least 2")
        return k

    def check_input_shape(self, chw: tuple[int, ...], where: str = "data") -> None:
        """Raise :class:`InputError` unless images of shape (C, H, W) fit the model's declared input."""
        chw = tuple(int(d) for d in chw)
        fits = len(chw) == 3 and all(d is None or d == c for d, c in zip(self.input_chw, chw))
        if not fits:
            declared = tuple("?" if d is None else d for d in self.input_chw)
            raise InputError(f"{where}: images of shape (C,H,W)={chw} do not fit model {self.path.name}, which expects {declared}; use data of the size the model was trained on")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Class scores (N, K) for a float32 batch (N, C, H, W)."""
        n = batch.shape[0]
        try:
            if self.adaptation.loop_batch:
                scores = np.concatenate([self.session.run([self.output_name], {self.input_name: batch[i:i + 1]})[0]
                                         for i in range(n)], axis=0)
            else:
                (scores,) = self.session.run([self.output_name], {self.input_name: batch})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{self.path}: inference failed on a batch of shape {tuple(batch.shape)} ({first[:200]})") from None
        if scores.ndim != 2 or scores.shape[0] != n:
            raise InputError(f"{self.path}: output has shape {tuple(scores.shape)} for {n} inputs; expected (N, K) class scores")
        if scores.dtype.kind != "f":
            raise InputError(f"{self.path}: output '{self.output_name}' is {scores.dtype}; expected float class scores "
                             "(export the logits, not the predicted labels)")
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
            raise InputError(f"{self.path}: non-finite class scores (row {row} of a batch of {n}: {scores[row].tolist()}); "
                             "the model is broken for these inputs, so nothing is certified")
        return scores

    def predict_labels(self, batch: np.ndarray) -> np.ndarray:
        """Base-classifier labels f(batch) as an int64 array of length N (argmax, lowest index on ties)."""
        return np.argmax(self.logits(batch), axis=1).astype(np.int64, copy=False)
