"""Loading real dermoscopy data: a DermaMNIST-format ``.npz`` or an ISIC-style image folder.

* **npz** (MedMNIST DermaMNIST layout): ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
  ``test_images``, ``test_labels``; images uint8 (N,H,W,3) or (N,H,W) grey, labels integer (N,) or (N,1).
  Optional: ``class_names`` and ``malignant_classes`` (string arrays) and per-split metadata arrays
  ``<split>_<field>`` for the fields in :data:`~certification.dataset_io.METADATA_FIELDS`. Without
  ``class_names``, a file with at most 7 classes gets the DermaMNIST names.
* **folder**: image files plus ``labels.csv`` with columns ``image`` (path relative to the folder; the
  extension may be left off if the file is .jpg/.jpeg/.png) and ``label`` (class name or integer index);
  optional ``split`` column (train/val/test; otherwise a seeded 70/15/15 split) and metadata columns
  (``fitzpatrick`` as 1..6 or I..VI; ``hair``, ``illumination``, ``vignette``, ``blur`` in [0, 1]).
  Class order: the synthetic or DermaMNIST order when every name belongs to it, else sorted names.
  Instead of ``labels.csv`` the folder may hold ISIC's one-hot ground truth (ISIC 2018/2019
  ``*GroundTruth.csv``: ``image,MEL,NV,BCC,...``, one row per image, exactly one 1 (or 1.0) per row); its class
  columns, in header order, are the classes.

Malignant classes: ``malignant_classes`` when given (each must be a class), else the class names found in
:data:`KNOWN_MALIGNANT` (case-insensitive: the synthetic, DermaMNIST and ISIC codes). A data set in which none is
found is refused, because the gate's malignant-recall criterion would silently be dropped: name them in
``data.malignant_classes``.

Images of any square size >= :data:`MIN_IMAGE_SIZE` are produced by one method: PIL bilinear resampling of the
whole image to size x size (no crop; aspect ratio not kept); output is uint8 (N,S,S,3).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from certification.data.synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from certification.data.synthetic import MALIGNANT_CLASSES as SYNTHETIC_MALIGNANT
from certification.dataset_io import FITZPATRICK_NAMES, METADATA_FIELDS, read_npz, validate_arrays
from certification.errors import InputError

SPLITS = ("train", "val", "test")
#: DermaMNIST (HAM10000) label order and the malignant ones (akiec: actinic keratosis / intraepithelial carcinoma).
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DERMAMNIST_MALIGNANT = ("akiec", "bcc", "mel")
#: ISIC 2018/2019 diagnosis codes that are malignant (AK: actinic keratosis, DermaMNIST's akiec, counted likewise).
ISIC_MALIGNANT = ("MEL", "BCC", "SCC", "AK", "AKIEC")
#: Class names recognised as malignant when ``malignant_classes`` is not given (compared case-insensitively).
KNOWN_MALIGNANT = frozenset(c.lower() for c in SYNTHETIC_MALIGNANT + DERMAMNIST_MALIGNANT + ISIC_MALIGNANT
                            + ("squamous_cell_carcinoma", "melanoma", "basal_cell_carcinoma", "malignant"))
MIN_IMAGE_SIZE = 8
LABELS_CSV = "labels.csv"
_FITZPATRICK_ROMAN = {name: k for k, name in enumerate(FITZPATRICK_NAMES, start=1)}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class RealDataset:
    """Splits of a real data set: name -> (images uint8 N,S,S,3, labels int64 N, metadata arrays)."""

    splits: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]
    class_names: list[str]
    malignant_classes: list[str]


def check_real_image_size(size: int) -> int:
    """``size`` when it is an integer >= :data:`MIN_IMAGE_SIZE` (real data is resized to any size a model takes)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < MIN_IMAGE_SIZE:
        raise InputError(f"unsupported image size {size!r}; real data needs an integer side >= {MIN_IMAGE_SIZE} pixels")
    return int(size)


def resolve_malignant(class_names: Sequence[str], declared: Sequence[str], where: str) -> list[str]:
    """The malignant classes: ``declared`` (each must be a class) or those of :data:`KNOWN_MALIGNANT`; InputError
    when none results, since the gate would otherwise judge no malignant recall."""
    if declared:
        unknown = [c for c in declared if c not in class_names]
        if unknown:
            raise InputError(f"{where}: malignant class '{unknown[0]}' (data.malignant_classes) is not one of the classes "
                             f"{', '.join(class_names)}")
        return [c for c in class_names if c in declared]
    found = [c for c in class_names if c.lower() in KNOWN_MALIGNANT]
    if not found:
        raise InputError(f"{where}: none of the classes {', '.join(class_names)} is a known malignant class, so the gate "
                         "could not judge malignant recall; name them in params data.malignant_classes")
    return found


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in images])


def _to_rgb(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise InputError(f"{where}: images must have shape (N,H,W,3) or (N,H,W), got {images.shape}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _metadata(values: np.ndarray, name: str, n: int, where: str) -> np.ndarray:
    if values.shape != (n,):
        raise InputError(f"{where}: metadata '{name}' must have shape ({n},), got {values.shape}")
    if name == "fitzpatrick":
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 1 or values.max() > 6:
            raise InputError(f"{where}: 'fitzpatrick' must be integers 1..6")
        return values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number) or not np.all((values >= 0) & (values <= 1)):
        raise InputError(f"{where}: metadata '{name}' must be numbers in [0, 1]")
    return values.astype(np.float32)


def load_npz(path: str | Path, image_size: int, malignant_classes: Sequence[str] = ()) -> RealDataset:
    """Load a DermaMNIST-format file; errors name the missing key or the bad array."""
    size = check_real_image_size(image_size)
    path = Path(path)
    arrays = read_npz(path, hint="set data.path to a DermaMNIST-format .npz")
    for split in SPLITS:
        for kind in ("images", "labels"):
            if f"{split}_{kind}" not in arrays:
                raise InputError(f"{path}: missing array '{split}_{kind}' (a DermaMNIST-format file has train/val/test _images and _labels)")
    labels_all = {s: arrays[f"{s}_labels"] for s in SPLITS}
    for split, labels in labels_all.items():
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels_all[split] = labels[:, 0]
    if "class_names" in arrays:
        class_names = [str(c) for c in arrays["class_names"].tolist()]
        check_class_names(class_names, str(path))
    else:
        top = max((int(v.max()) for v in labels_all.values() if v.size and np.issubdtype(v.dtype, np.integer)), default=0)
        class_names = list(DERMAMNIST_CLASSES) if top < len(DERMAMNIST_CLASSES) else [f"class_{i}" for i in range(top + 1)]
    if "malignant_classes" in arrays and not malignant_classes:
        malignant = [str(c) for c in arrays["malignant_classes"].tolist()]
        unknown = sorted(set(malignant) - set(class_names))
        if unknown:
            raise InputError(f"{path}: malignant class '{unknown[0]}' is not in class_names")
    else:
        malignant = resolve_malignant(class_names, malignant_classes, str(path))
    splits = {}
    for split in SPLITS:
        where = f"{path} [{split}]"
        images = arrays[f"{split}_images"]
        if images.dtype != np.uint8:
            raise InputError(f"{where}: '{split}_images' must be uint8 pixels 0..255, got dtype {images.dtype}")
        images = _to_rgb(images, where)
        labels = labels_all[split]
        validate_arrays(images, labels, where, len(class_names))
        metadata = {
            name: _metadata(arrays[f"{split}_{name}"], name, len(labels), where)
            for name in METADATA_FIELDS if f"{split}_{name}" in arrays
        }
        splits[split] = (_resize(images, size), labels.astype(np.int64), metadata)
    return RealDataset(splits=splits, class_names=class_names, malignant_classes=malignant)


def check_class_names(names: Sequence[str], where: str) -> None:
    """Class names must be non-empty, distinct strings (a repeated name would merge two classes' indices)."""
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise InputError(f"{where}: class names must be non-empty strings, got {list(names)!r}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise InputError(f"{where}: class name '{repeated[0]}' appears twice; every class needs its own name")


def _class_names(raw: list[str], declared: Sequence[str], table: Path) -> tuple[list[str], np.ndarray]:
    """Class names (index order) and label indices of labels.csv. With ``declared`` classes every label must be
    one of them (a name, or an index into the list); without, labels must be names of one known vocabulary
    (the synthetic classes or DermaMNIST's) so a typo cannot add a class and re-sort the others."""
    numeric = [v.lstrip("-").isdigit() for v in raw]
    if any(numeric) and not all(numeric):
        first = raw[numeric.index(True)] if not numeric[0] else raw[numeric.index(False)]
        raise InputError(f"{table}: labels mix class indices and class names (e.g. {first!r}); use one kind")
    if declared:
        check_class_names(declared, "data.classes")
        names = list(declared)
        if all(numeric):
            indices = np.array([int(v) for v in raw], dtype=np.int64)
            bad = next((int(v) for v in indices if not 0 <= v < len(names)), None)
            if bad is not None:
                raise InputError(f"{table}: label {bad} is not an index of the {len(names)} classes of data.classes")
            return names, indices
        unknown = next((v for v in raw if v not in names), None)
        if unknown is not None:
            raise InputError(f"{table}: label {unknown!r} is not one of data.classes ({', '.join(names)}); fix the label")
        return names, np.array([names.index(v) for v in raw], dtype=np.int64)
    if all(numeric):
        raise InputError(f"{table}: labels are class indices; name the classes in params data.classes (index order)")
    for vocabulary in (SYNTHETIC_CLASSES, DERMAMNIST_CLASSES):
        if set(raw) <= set(vocabulary):
            names = list(vocabulary)
            return names, np.array([names.index(v) for v in raw], dtype=np.int64)
    unknown = sorted(set(raw) - set(SYNTHETIC_CLASSES) - set(DERMAMNIST_CLASSES))
    raise InputError(f"{table}: label {unknown[0]!r} is not a known class name; declare the classes in params "
                     "data.classes (or fix the label)")


def _find_image(folder: Path, name: str, line: int) -> Path:
    root = folder.resolve()
    candidate = (folder / name).resolve()
    if Path(name).is_absolute() or not candidate.is_relative_to(root):
        raise InputError(f"{folder / LABELS_CSV} line {line}: image '{name}' is outside the data folder; "
                         "list images by their path inside it")
    candidate = folder / name
    if candidate.is_file():
        return candidate
    for suffix in _IMAGE_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise InputError(f"{folder / LABELS_CSV} line {line}: image '{name}' not found in {folder}")


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable image ({type(exc).__name__}); replace or remove it from {LABELS_CSV}") from None


def _parse_metadata(name: str, text: str, where: str) -> float:
    text = text.strip()
    try:
        if name == "fitzpatrick":
            value = _FITZPATRICK_ROMAN.get(text.upper()) or int(text)
            if not 1 <= value <= 6:
                raise ValueError
            return value
        value = float(text)
        if not 0.0 <= value <= 1.0:
            raise ValueError
        return value
    except ValueError:
        expected = "1..6 or I..VI" if name == "fitzpatrick" else "a number in [0, 1]"
        raise InputError(f"{where}: '{name}' value {text!r} is not {expected}") from None


def _label_table(folder: Path) -> Path:
    """``labels.csv``, else the folder's one ISIC ground-truth CSV (``*GroundTruth*.csv``)."""
    table = folder / LABELS_CSV
    if table.is_file():
        return table
    truths = sorted(folder.glob("*GroundTruth*.csv"))
    if len(truths) == 1:
        return truths[0]
    if len(truths) > 1:
        raise InputError(f"{folder}: several ground-truth files ({', '.join(t.name for t in truths)}); keep one, or write {LABELS_CSV}")
    raise InputError(f"{table}: labels file not found; a folder data set needs {LABELS_CSV} with columns image,label "
                     "(or ISIC's one-hot *GroundTruth.csv)")


def _one_hot_labels(rows: list[dict[str, str]], header: Sequence[str], table: Path) -> tuple[list[str], list[str]]:
    """Class columns (header order) and each row's class name from ISIC's one-hot ground truth."""
    class_columns = [c for c in header if c not in ("image", "split", *METADATA_FIELDS)]
    if len(class_columns) < 2:
        raise InputError(f"{table}: missing column 'label' (need image,label, or ISIC one-hot columns image,MEL,NV,...)")
    labels = []
    for line, row in enumerate(rows, start=2):
        try:
            values = [float(row[c]) for c in class_columns]
        except (TypeError, ValueError):
            raise InputError(f"{table} line {line}: one-hot class columns must hold 0 or 1") from None
        if any(v not in (0.0, 1.0) for v in values) or sum(values) != 1.0:
            raise InputError(f"{table} line {line}: expected exactly one class column equal to 1, got "
                             f"{dict(zip(class_columns, values))}")
        labels.append(class_columns[values.index(1.0)])
    return class_columns, labels


def load_folder(folder: str | Path, image_size: int, seed: int, classes: Sequence[str] = (),
                malignant_classes: Sequence[str] = ()) -> RealDataset:
    """Load an image folder with ``labels.csv`` (or ISIC's one-hot ground truth); every listed image must exist
    inside the folder and decode, and every label must be one of ``classes`` (see :func:`_class_names`)."""
    size = check_real_image_size(image_size)
    folder = Path(folder)
    table = _label_table(folder)
    with open(table, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        columns = set(header)
        rows = list(reader)
    if "image" not in columns:
        raise InputError(f"{table}: missing column 'image' (need image,label)")
    if not rows:
        raise InputError(f"{table}: no rows; the data set is empty")
    if "label" in columns:
        raw = [(row["label"] or "").strip() for row in rows]
        class_names, indices = _class_names(raw, classes, table)
    else:
        one_hot_classes, raw = _one_hot_labels(rows, header, table)
        class_names, indices = _class_names(raw, classes or one_hot_classes, table)
    if "split" in columns:
        split_of = [row["split"].strip() for row in rows]
        bad = next((s for s in split_of if s not in SPLITS), None)
        if bad is not None:
            raise InputError(f"{table}: split value {bad!r} must be train, val or test")
    else:
        draw = np.random.default_rng(seed).random(len(rows))
        split_of = ["train" if d < 0.7 else "val" if d < 0.85 else "test" for d in draw]
    fields = [f for f in METADATA_FIELDS if f in columns]
    images = np.stack([_read_image(_find_image(folder, row["image"].strip(), i + 2), size) for i, row in enumerate(rows)])
    meta = {
        f: np.array([_parse_metadata(f, row[f], f"{table} line {i + 2}") for i, row in enumerate(rows)],
                    dtype=np.int64 if f == "fitzpatrick" else np.float32)
        for f in fields
    }
    splits = {}
    for split in SPLITS:
        chosen = np.array([s == split for s in split_of])
        where = f"{table} [{split}]"
        if not chosen.any():
            raise InputError(f"{where}: the split is empty; add rows for it (column split) or more images")
        validate_arrays(images[chosen], indices[chosen], where, len(class_names))
        splits[split] = (images[chosen], indices[chosen], {f: v[chosen] for f, v in meta.items()})
    malignant = resolve_malignant(class_names, malignant_classes, str(table))
    return RealDataset(splits=splits, class_names=class_names, malignant_classes=malignant)
