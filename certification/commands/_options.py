"""The option sets shared by the subcommands (one definition; defaults from :mod:`certification.defaults`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from certification import defaults
from certification.errors import ParameterError

if TYPE_CHECKING:
    from certification.certify_run import RunOptions

DEFAULT_RADII = defaults.RADII
DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Model, data, noise, subset, runtime and output options of a run of the smoothed classifier."""
    parser.add_argument("--model", required=True, type=Path, help="ONNX model: float32 input [batch,C,H,W] in [0,1], output (N,K) class scores "
                        "(an NHWC input or a fixed batch is adapted; declared other units are refused)")
    parser.add_argument("--data", required=True, type=Path, help="data split .npz (images uint8 N,H,W,C or float32 N,C,H,W in [0,1]; labels), "
                        "or a DermaMNIST-format .npz (its test_images/test_labels)")
    parser.add_argument("--sigma", required=True, type=float, help="noise standard deviation, L2 in [0,1]-pixel units")
    parser.add_argument("--alpha", type=float, default=defaults.ALPHA,
                        help=f"per-example failure probability, in (0, 0.5) (default {defaults.ALPHA:g})")
    parser.add_argument("--seed", type=int, default=defaults.SEED,
                        help=f"noise seed; noise of an example depends on (seed, example index) only (default {defaults.SEED})")
    parser.add_argument("--max-examples", type=int, default=0, help="a seeded subset of this size (0 = all); original indices are kept")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"noisy copies per inference call (default {DEFAULT_BATCH_SIZE}); does not change results")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: half the cores, rounded up); does not change results")
    parser.add_argument("--noise-threads", type=int, default=None, help="threads drawing noise (default: the cores onnxruntime leaves, at least 1); does not change results")
    parser.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto", help="execution provider (auto: CUDA when onnxruntime offers it, else CPU)")
    parser.add_argument("--lighting", default="none", metavar="DIRECTIONS",
                        help="lighting directions of an anisotropic smoothing covariance: none (default), dc or dc+ramps "
                             "(certification.lighting; rows then carry mahalanobis_radius)")
    parser.add_argument("--lighting-tau", type=float, default=0.0,
                        help="RMS per-pixel standard deviation each lighting direction adds, [0,1]-pixel units (with --lighting)")
    parser.add_argument("--out", required=True, type=Path, help="output JSONL, one object per example")


def add_summary_options(parser: argparse.ArgumentParser) -> None:
    """Radii and confidence of a dataset-level summary (certify --summary, summarize)."""
    parser.add_argument("--radii", type=float, nargs="+", default=list(DEFAULT_RADII),
                        help="radii of the certified-accuracy curve, L2 in [0,1]-pixel units (default: params.yaml's certify.radii)")
    parser.add_argument("--confidence", type=float, default=defaults.CONFIDENCE,
                        help=f"one-sided confidence of the dataset-level bounds (default {defaults.CONFIDENCE:g})")


def check_out(out: Path, suffix: str) -> None:
    """``out`` must be a file name ending in ``suffix`` that is not a directory."""
    if out.suffix != suffix:
        raise ParameterError(f"{out}: expected a {suffix} file name")
    if out.is_dir():
        raise ParameterError(f"{out} is a directory; give a file name")


def run_options(args: argparse.Namespace) -> "RunOptions":
    """The library's :class:`~certification.certify_run.RunOptions` from the options :func:`add_run_options` added."""
    from certification.certify_run import RunOptions

    return RunOptions(sigma=args.sigma, alpha=args.alpha, seed=args.seed, batch_size=args.batch_size,
                      max_examples=args.max_examples, threads=args.threads, noise_threads=args.noise_threads,
                      provider=args.provider, lighting_directions=getattr(args, "lighting", "none"),
                      lighting_tau=getattr(args, "lighting_tau", 0.0))
