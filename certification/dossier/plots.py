"""Deterministic figures for the dossier (matplotlib, Agg backend), returned as PNG bytes.

Same inputs give the same bytes on one platform: fixed size and dpi, no timestamps or software tag in
the PNG metadata, no randomness.
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from certification.certificate_arrays import as_arrays  # noqa: E402
from certification.records import CertifyRecord  # noqa: E402
from certification.summary import radius_point  # noqa: E402

DPI = 150
_STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "svg.hashsalt": "smoothcert"}


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def certified_accuracy_curve(records: Sequence[CertifyRecord], confidence: float,
                             gate_radius: float, threshold: float) -> bytes:
    """Certified accuracy vs radius (step curve over every observed radius) with its lower-bound curve, each
    point from :func:`certification.summary.radius_point` (the producer of the metrics' curve)."""
    rows = as_arrays(records)
    radii = np.unique(np.concatenate([[0.0], rows.radius[rows.correct]]))
    grid = np.linspace(0.0, max(float(radii.max()) * 1.05, gate_radius * 1.5, 1e-3), 300)
    grid = np.unique(np.concatenate([grid, radii]))
    points = [radius_point(rows, float(r), confidence) for r in grid]
    est = [p["certified_accuracy"] for p in points]
    low = [p["lower_bound"] for p in points]
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.2, 3.0))
        ax.step(grid, est, where="post", color="#1f4e79", label="certified accuracy (estimate)")
        ax.step(grid, low, where="post", color="#c55a11", linestyle="--",
                label=f"lower bound ({confidence:.0%}, clopper-pearson-minus-alpha)")
        ax.axvline(gate_radius, color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(threshold, color="grey", linewidth=0.8, linestyle=":")
        ax.plot([gate_radius], [threshold], marker="o", color="black", markersize=4,
                label=f"requirement: bound >= {threshold:.2f} at r = {gate_radius:g}")
        ax.set_xlabel("L2 radius r ([0,1] pixel units)")
        ax.set_ylabel("share of test images")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(0, grid.max())
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        fig.tight_layout()
        return _png(fig)


def group_bars(groups: Mapping[str, Mapping[str, Any] | None], title: str, threshold: float) -> bytes:
    """Clean and certified accuracy per group with lower bounds (error bar from estimate down to bound)."""
    names = [g for g, row in groups.items() if row and row.get("n_examples")]
    x = np.arange(len(names))
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.2, 2.6))
        for offset, key, colour, label in ((-0.2, "clean_accuracy", "#9dc3e6", "clean accuracy"),
                                           (0.2, "certified", "#1f4e79", "certified accuracy at gate radius")):
            est = np.array([groups[g][key]["estimate"] for g in names])
            low = np.array([groups[g][key]["lower"] for g in names])
            ax.bar(x + offset, est, width=0.38, color=colour, label=label)
            ax.errorbar(x + offset, est, yerr=[est - low, np.zeros_like(est)], fmt="none", ecolor="black",
                        capsize=2, linewidth=0.8)
        ax.axhline(threshold, color="#c55a11", linestyle="--", linewidth=0.8, label=f"gate threshold {threshold:.2f}")
        ax.set_xticks(x, [f"{g}\n(n={groups[g]['n_examples']})" for g in names])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share; whisker to lower bound")
        ax.set_title(title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return _png(fig)


def least_robust_images(images: Sequence[np.ndarray], captions: Sequence[str]) -> bytes:
    """A row of uint8 HxWx3 images, nearest-neighbour upscaled, each with a caption."""
    count = max(len(images), 1)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, count, figsize=(6.2, 1.75), squeeze=False)
        for ax, image, caption in zip(axes[0], images, captions):
            ax.imshow(image, interpolation="nearest")
            ax.set_title(caption, fontsize=5.5)
        for ax in axes[0]:
            ax.axis("off")
        fig.tight_layout()
        return _png(fig)


def corruption_vs_radius(corruptions: Sequence[Mapping[str, Any]], radii: Sequence[float], gate_radius: float) -> bytes:
    """Mean L2 size of each lighting/camera change (points) against the distribution of certified radii."""
    rows = [c for c in corruptions if isinstance(c.get("l2_mean"), (int, float))]
    names = sorted({str(c["name"]) for c in rows})
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.2, 3.0))
        positive = np.sort([r for r in radii if r > 0])
        if len(positive):
            ax.axhspan(float(np.percentile(positive, 25)), float(np.percentile(positive, 75)), color="#9dc3e6",
                       alpha=0.5, label="certified radius, 25th-75th percentile")
            ax.axhline(float(np.median(positive)), color="#1f4e79", linewidth=1, label="median certified radius")
        ax.axhline(gate_radius, color="#c55a11", linestyle="--", linewidth=1, label=f"gate radius {gate_radius:g}")
        for i, name in enumerate(names):
            pts = sorted((int(c.get("severity", 0)), float(c["l2_mean"])) for c in rows if str(c["name"]) == name)
            ax.plot([i] * len(pts), [p[1] for p in pts], marker="o", linestyle="-", color="black", markersize=3,
                    linewidth=0.6)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_xlim(-0.6, max(len(names), 1) - 0.4)
        values = [float(c["l2_mean"]) for c in rows] + ([float(np.median(positive))] if len(positive) else [])
        values = [v for v in values if v > 0]
        if values and max(values) / max(min(min(values), gate_radius), 1e-6) > 20:
            ax.set_yscale("log")  # changes far larger than the radii: keep the radius band readable
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel("L2 norm ([0,1] pixel units)")
        ax.set_title("Mean L2 size of each change (dots: severities 1..4) vs certified radii")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        return _png(fig)
