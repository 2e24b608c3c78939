"""The input contract of a base classifier, checked and (where it is safe) adapted before a session opens.

The contract: one float32 input of shape [batch, C, H, W] (NCHW), values in [0, 1], normalisation inside the
graph. What can be detected is checked:

* **Layout.** An input [N, H, W, C] with C in {1, 3} and the second axis not in {1, 3} (or metadata
  ``input_layout = NHWC``) is NHWC: a Transpose node (perm 0,3,1,2 of the new NCHW input) is prepended, so the
  adapted graph takes NCHW and hands the original graph NHWC. Noise and radii stay in the same pixel space (a
  transpose is an isometry), so the certificate is unchanged in meaning.
* **Fixed batch.** A fixed batch axis (e.g. 1) is rewritten to a symbolic one when a batch of two then gives the
  same scores as two single calls; otherwise the classifier runs one example per call (``loop_batch``).
* **Units.** Model metadata (``metadata_props``) may state the input units: keys ``input_range``, ``input_units``,
  ``pixel_range`` or ``input_scale`` must read as [0, 1] (e.g. "[0,1]", "0-1", "unit"), and ``normalization`` /
  ``normalisation`` must not say it is applied outside the model ("external", "caller", "outside", "none
  required"...). Anything else (e.g. "[0,255]", "mean/std normalised input") is a one-line
  :class:`~certification.errors.InputError` naming the key, its value and the expected units. A graph without such
  metadata cannot reveal its units; the README says to declare ``input_range = [0,1]``.

The adapted model is held in memory only; the artifact named by SHA-256 is the file, and the adaptations are
recorded with the session configuration.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from certification.errors import InputError

EXPECTED = "float32 NCHW [batch, C, H, W] with values in [0, 1] and normalisation inside the graph"
UNIT_KEYS = ("input_range", "input_units", "pixel_range", "input_scale")
NORMALISATION_KEYS = ("normalization", "normalisation", "input_normalization", "input_normalisation")
LAYOUT_KEYS = ("input_layout", "layout", "data_format")
_UNIT_OK = re.compile(r"^\s*[\[(]?\s*0(\.0*)?\s*(,|-|to|\.\.)\s*1(\.0*)?\s*[\])]?\s*$|^\s*(unit|\[0,\s*1\]-?pixels?)\s*$", re.I)
_NORMALISED_OUTSIDE = re.compile(r"extern|outside|caller|before the model|pre-?process|required|mean.*std|imagenet", re.I)
_INSIDE = re.compile(r"inside|in.graph|internal|built.in|included|embedded|none$|no$", re.I)


@dataclass(frozen=True)
class InputLayout:
    """What the declared input says: ``layout`` NCHW or NHWC, ``fixed_batch`` (None when symbolic), the shape."""

    name: str
    shape: tuple[Any, ...]
    layout: str
    fixed_batch: int | None


@dataclass
class Adaptation:
    """The in-memory changes made so a model meets the contract (empty: used as it is)."""

    steps: list[str] = field(default_factory=list)
    loop_batch: bool = False


def _metadata(metadata: Mapping[str, str], keys: Sequence[str]) -> tuple[str, str] | None:
    lowered = {k.lower(): (k, v) for k, v in metadata.items()}
    return next((lowered[k] for k in keys if k in lowered), None)


def check_units(metadata: Mapping[str, str], where: str) -> None:
    """InputError when the model's metadata declares input units other than [0, 1] or outside normalisation."""
    units = _metadata(metadata, UNIT_KEYS)
    if units is not None and not _UNIT_OK.match(units[1]):
        raise InputError(f"{where}: metadata {units[0]} = {units[1]!r}, but inputs are {EXPECTED}; fold the scaling "
                         "into the graph (e.g. a Mul by 255 as its first node) and declare input_range = [0,1]")
    norm = _metadata(metadata, NORMALISATION_KEYS)
    if norm is not None and _NORMALISED_OUTSIDE.search(norm[1]) and not _INSIDE.search(norm[1]):
        raise InputError(f"{where}: metadata {norm[0]} = {norm[1]!r} says normalisation happens outside the model, but "
                         f"inputs are {EXPECTED}; put the mean/std normalisation inside the graph (noise is added before it)")


def describe_input(name: str, shape: Sequence[Any], metadata: Mapping[str, str], where: str) -> InputLayout:
    """Layout and batch axis of a 4-D image input (``shape`` entries are ints or symbolic names/None)."""
    shape = tuple(shape)
    if len(shape) != 4:
        raise InputError(f"{where}: input '{name}' has shape {list(shape)}; expected {EXPECTED}")
    declared = _metadata(metadata, LAYOUT_KEYS)
    if declared is not None and declared[1].strip().upper() in ("NHWC", "CHANNELS_LAST"):
        layout = "NHWC"
    elif declared is not None and declared[1].strip().upper() in ("NCHW", "CHANNELS_FIRST"):
        layout = "NCHW"
    else:
        layout = "NHWC" if shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return InputLayout(name, shape, layout, batch)


def transpose_nhwc_input(model: Any) -> None:
    """Prepend Transpose(perm 0,2,3,1) so the graph's new input is NCHW (in place on an onnx.ModelProto)."""
    import onnx
    from onnx import helper

    graph = model.graph
    original = graph.input[0]
    dims = list(original.type.tensor_type.shape.dim)
    nchw_name = f"{original.name}_nchw"
    new_input = helper.make_tensor_value_info(nchw_name, original.type.tensor_type.elem_type, None)
    for k in (0, 3, 1, 2):
        new_input.type.tensor_type.shape.dim.add().CopyFrom(dims[k])
    node = helper.make_node("Transpose", [nchw_name], [original.name], perm=[0, 2, 3, 1], name="smoothcert_nchw_to_nhwc")
    graph.node.insert(0, node)
    graph.input.remove(original)
    graph.input.insert(0, new_input)
    onnx.checker.check_model(model)


def symbolic_batch(model: Any) -> None:
    """Make the batch axis of the input and of every output symbolic (in place)."""
    for value in [model.graph.input[0], *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = "batch"
    # stale inferred shapes of intermediate values would pin the batch again
    del model.graph.value_info[:]


def load_onnx_artifact(path: Any) -> Any:
    """The ONNX file at ``path`` as an onnx.ModelProto, checked to be a loadable model with one (non-initializer)
    input and one output; a one-line InputError otherwise (missing file, not ONNX, two inputs, ...)."""
    from pathlib import Path

    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found; run the export stage or pass an existing .onnx file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ... for a file that is not ONNX
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not an ONNX model ({first[:160]}); pass the exported .onnx file") from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise InputError(f"{path}: expected one image input and one output, found {len(inputs)} inputs and "
                         f"{len(model.graph.output)} outputs; export the classifier alone")
    return model
