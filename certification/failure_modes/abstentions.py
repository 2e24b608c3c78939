"""Where the smoothed classifier abstains, and the least robust correctly classified examples.

Abstention rates are plain rates with one-sided Clopper-Pearson lower and upper bounds at ``confidence``
(``certification.dataset_bounds.proportion_bound``). A group ``exceeds_limit`` when the lower bound of its
abstention rate is above the gate's maximum abstention rate (shown, not merely estimated, to abstain too often);
``estimate_above_limit`` when only the point estimate is.

The least robust correct examples are the correctly certified examples with the smallest certified radius
(ties broken by test index); each is saved as an upscaled (nearest-neighbour) PNG.

JSON::

    "abstentions": {"confidence": float, "limit": float, "overall": ProportionBound dict,
                    "groups": [{"field", "group", "n_examples", "abstained", "rate": ProportionBound dict | null,
                                "exceeds_limit": bool, "estimate_above_limit": bool}],
                    "exceeds_limit": [{"field", "group"}]}
    "least_robust": [{"rank", "index", "label", "label_name", "prediction", "radius", "image"}]
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from certification.dataset_bounds import proportion_bound
from certification.certificate_arrays import CertificateArrays
from certification.failure_modes.grouping import Group
from certification.fileio import atomic_output


@dataclass(frozen=True)
class GroupAbstention:
    field: str
    group: str
    n_examples: int
    abstained: int
    rate: dict[str, object] | None
    exceeds_limit: bool
    estimate_above_limit: bool


@dataclass(frozen=True)
class AbstentionReport:
    confidence: float
    limit: float
    overall: dict[str, object]
    groups: list[GroupAbstention] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["exceeds_limit"] = [{"field": g.field, "group": g.group} for g in self.groups if g.exceeds_limit]
        return out


@dataclass(frozen=True)
class LeastRobustExample:
    rank: int
    index: int
    label: int
    label_name: str
    prediction: int
    radius: float
    image: str


def abstention_report(rows: CertificateArrays, groups: Sequence[Group], limit: float, confidence: float) -> AbstentionReport:
    """Abstention rate overall and per group (group masks are over row positions)."""
    abstained = rows.abstained
    overall = proportion_bound(int(abstained.sum()), len(rows), confidence)
    report = AbstentionReport(float(confidence), float(limit), overall.to_dict())
    for group in groups:
        n, k = group.size, int(abstained[group.mask].sum())
        bound = proportion_bound(k, n, confidence) if n else None
        report.groups.append(GroupAbstention(
            group.field, group.name, n, k,
            bound.to_dict() if bound else None,
            bool(bound and bound.lower > limit),
            bool(bound and bound.estimate > limit),
        ))
    return report


def least_robust_correct(rows: CertificateArrays, count: int) -> np.ndarray:
    """Row positions of the ``count`` correct examples with the smallest radius (ties: smaller test index first)."""
    candidates = np.flatnonzero(rows.correct)
    order = np.lexsort((rows.index[candidates], rows.radius[candidates]))
    return candidates[order[:count]]


def save_upscaled_png(image_hwc: np.ndarray, path: Path, target_size: int = 256) -> None:
    """Write a uint8 HxWxC (or float [0,1]) image enlarged by an integer factor (nearest) to about ``target_size``."""
    if image_hwc.dtype != np.uint8:
        image_hwc = np.clip(np.rint(image_hwc * 255.0), 0, 255).astype(np.uint8)
    if image_hwc.shape[-1] == 1:
        image_hwc = image_hwc[..., 0]
    picture = Image.fromarray(image_hwc)
    scale = max(1, target_size // max(picture.size))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    with atomic_output(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")


def save_least_robust(
    rows: CertificateArrays,
    images_hwc: np.ndarray,
    class_names: Sequence[str],
    out_dir: Path,
    count: int,
) -> list[LeastRobustExample]:
    """Save the least robust correct examples as PNGs in ``out_dir``; ``images_hwc`` is indexed by test index."""
    examples = []
    for rank, row in enumerate(least_robust_correct(rows, count), start=1):
        index = int(rows.index[row])
        path = Path(out_dir) / f"least_robust_{rank:02d}_index{index:05d}.png"
        save_upscaled_png(np.asarray(images_hwc[index]), path)
        label = int(rows.label[row])
        examples.append(LeastRobustExample(
            rank, index, label, str(class_names[label]), int(rows.prediction[row]), float(rows.radius[row]), path.as_posix()
        ))
    return examples
