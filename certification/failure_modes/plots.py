"""Figures of the failure-mode evaluation (matplotlib, Agg backend, PNG written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from certification.failure_modes.attacks import AttackReport  # noqa: E402
from certification.failure_modes.corruptions import CorruptionResult  # noqa: E402
from certification.failure_modes.subgroups import SubgroupReport  # noqa: E402
from certification.fileio import atomic_output  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> str:
    with atomic_output(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    return Path(path).as_posix()


def plot_attack_curves(report: AttackReport, path: Path) -> str:
    """Certified accuracy (estimate, lower bound) beside empirical robust accuracy (estimate, upper bound)."""
    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    radii = [p["radius"] for p in report.certified_accuracy]
    axes.plot(radii, [p["certified_accuracy"] for p in report.certified_accuracy], "o-", color="tab:blue", label="certified (estimate)")
    axes.plot(radii, [p["lower_bound"] for p in report.certified_accuracy], "--", color="tab:blue", label="certified lower bound")
    axes.plot(radii, [p["accuracy"] for p in report.empirical_robust_accuracy], "s-", color="tab:red", label="under PGD attack (estimate)")
    axes.plot(radii, [p["upper_bound"] for p in report.empirical_robust_accuracy], ":", color="tab:red", label="under attack, upper bound")
    axes.set_xlabel("L2 radius ([0,1]-pixel units)")
    axes.set_ylabel("accuracy of the smoothed classifier")
    axes.set_ylim(0.0, 1.02)
    axes.set_title(f"{report.n_examples} examples; truth lies between the two curves")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def plot_corruption_l2(results: Sequence[CorruptionResult], median_radius: float, path: Path) -> str:
    """Median L2 size of each variation and severity (log scale) against the median certified radius."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8.0, 6.0), sharex=True)
    names = list(dict.fromkeys(r.name for r in results))
    for r in results:
        x = names.index(r.name) + (r.severity - 2.5) * 0.15
        top.scatter(x, max(r.l2_median, 1e-4), color="tab:green" if r.covered_share >= 1.0 else "tab:orange" if r.covered_share > 0 else "tab:red", s=12 + 8 * r.severity)
        bottom.scatter(x, r.accuracy_smoothed, color="tab:blue", s=12 + 8 * r.severity)
        bottom.scatter(x, r.accuracy_base, color="tab:gray", marker="x", s=12 + 8 * r.severity)
    top.axhline(max(median_radius, 1e-4), color="black", linestyle="--", label=f"median certified radius {median_radius:.3g}")
    top.set_yscale("log")
    top.set_ylabel("median L2 change")
    top.legend(fontsize=8)
    top.set_title("green: within certified radius for all; orange: some; red: none")
    bottom.set_ylabel("accuracy (blue: smoothed, x: base)")
    bottom.set_ylim(0.0, 1.02)
    bottom.set_xticks(range(len(names)))
    bottom.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def plot_subgroups(report: SubgroupReport, path: Path) -> str:
    """Certified accuracy at the gate radius per subgroup: estimate and lower bound, with the gate threshold."""
    groups = [g for g in report.groups if g.n_examples > 0]
    figure, axes = plt.subplots(figsize=(7.0, 0.28 * len(groups) + 1.5))
    for row, g in enumerate(groups):
        color = "tab:red" if g.flagged else "tab:blue"
        axes.barh(row, g.at_gate.lower_bound or 0.0, color=color, alpha=0.5, hatch="//" if g.underpowered else None)
        axes.plot(g.at_gate.certified_accuracy, row, "k|", markersize=10)
    axes.axvline(report.threshold, color="black", linestyle="--", label=f"gate threshold {report.threshold:g}")
    axes.set_yticks(range(len(groups)))
    axes.set_yticklabels([f"{g.field}: {g.group} (n={g.n_examples})" for g in groups], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel(f"certified accuracy at r={report.gate_radius:g} (bar: lower bound, |: estimate; red: flagged; hatched: too few examples)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return _save(figure, path)
