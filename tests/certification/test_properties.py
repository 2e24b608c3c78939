"""Property-based checks (hypothesis): bounds stay in [0, 1] and are monotone in the count; loaders and the record
reader meet any malformed input with the clean one-line error, never a crash; random byte flips and appended bytes
never leave a signed dossier verified."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from certification.dataset_bounds import certified_rate_bound, proportion_bound
from certification.dataset_io import load_split
from certification.data.real import load_folder
from certification.errors import InputError
from certification.records import parse_certify_records

CONFIDENCE = st.floats(0.5, 0.999)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), data=st.data(), alpha=st.floats(0.0, 0.4), confidence=CONFIDENCE)
def test_bounds_lie_in_the_unit_interval_and_grow_with_the_count(n: int, data: st.DataObject, alpha: float,
                                                                  confidence: float) -> None:
    k = data.draw(st.integers(0, n - 1))
    low, high = certified_rate_bound(k, n, alpha, confidence), certified_rate_bound(k + 1, n, alpha, confidence)
    assert 0.0 <= low.lower <= high.lower <= 1.0 and low.lower <= k / n
    plain, plain_next = proportion_bound(k, n, confidence), proportion_bound(k + 1, n, confidence)
    assert 0.0 <= plain.lower <= plain.estimate <= plain.upper <= 1.0
    assert plain.lower <= plain_next.lower and plain.upper <= plain_next.upper


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


ARRAYS = hnp.arrays(dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.int8]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=ARRAYS, labels=ARRAYS, extra=st.booleans(), truncate=st.integers(0, 2000), num_classes=st.integers(1, 6))
def test_any_malformed_split_is_a_clean_input_error(tmp_path: Path, images: np.ndarray, labels: np.ndarray, extra: bool,
                                                    truncate: int, num_classes: int) -> None:
    arrays = {"images": images, "labels": labels, **({"fitzpatrick": labels} if extra else {})}
    data = _npz_bytes(arrays)
    path = tmp_path / "split.npz"
    path.write_bytes(data[: max(0, len(data) - truncate)] if truncate else data)
    try:
        split = load_split(path, num_classes=num_classes)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:  # accepted: then it really is a valid split
        assert split.images.ndim == 4 and len(split) == split.images.shape[0] and int(split.labels.max()) < num_classes


CSV_CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["image", "label", "split", "fitzpatrick", "hair", "junk"]), max_size=5),
       rows=st.lists(st.lists(CSV_CELL, min_size=0, max_size=6), max_size=6))
def test_any_malformed_labels_csv_is_a_clean_input_error(tmp_path: Path, header: list[str], rows: list[list[str]]) -> None:
    folder = tmp_path / "folder"
    folder.mkdir(exist_ok=True)
    (folder / "labels.csv").write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    try:
        load_folder(folder, 28, seed=0)
    except InputError as exc:
        assert "\n" not in str(exc)


ROW = {"index": 0, "label": 1, "prediction": 1, "correct": True, "radius": 0.3, "n0": 10, "n": 100, "n_a": 90,
       "p_lower": 0.8, "alpha": 0.001, "sigma": 0.25, "seed": 3, "seconds": 0.1, "counts_selection": [0, 10],
       "counts_estimation": [10, 90], "model_sha256": "m" * 64, "data_sha256": "d" * 64}
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda children: st.lists(children, max_size=3), max_leaves=5)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(ROW)), JSON_VALUES, max_size=3),
       dropped=st.sets(st.sampled_from(sorted(ROW)), max_size=2))
def test_any_malformed_certify_row_is_a_clean_input_error(changes: dict, dropped: set) -> None:
    row = {k: v for k, v in {**ROW, **changes}.items() if k not in dropped}
    try:
        (record,) = parse_certify_records(json.dumps(row) + "\n")
    except InputError as exc:
        assert "\n" not in str(exc)
    else:  # accepted rows are self-consistent
        assert record.correct == (record.prediction == record.label and record.prediction != -1)
        assert record.radius >= 0 and 0 <= record.p_lower <= 1 and record.n_a <= record.n


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory):
    from support.signed_dossier import build_and_sign

    return build_and_sign(tmp_path_factory.mktemp("signed-properties"), accepted=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_flips_and_appended_bytes_never_verify(signed, tmp_path: Path, data: st.DataObject) -> None:
    from certification.dossier.verify import verify_dossier

    original = signed.pdf.read_bytes()
    if data.draw(st.booleans(), label="append"):
        tampered = original + data.draw(st.binary(min_size=1, max_size=64).filter(lambda b: b.strip(b" \t\r\n\0")), label="tail")
    else:
        import re

        start, end = re.search(rb"/Contents <([0-9a-fA-F]+)>", original).span(1)  # the unsigned signature blob
        span = data.draw(st.sampled_from([(0, len(original) - 1), (start, end - 1)]), label="region")
        position = data.draw(st.integers(*span), label="position")
        flip = data.draw(st.integers(1, 255), label="xor")
        tampered = original[:position] + bytes([original[position] ^ flip]) + original[position + 1:]
    path = tmp_path / "tampered.pdf"
    path.write_bytes(tampered)
    try:
        report = verify_dossier(path, trust_root=signed.pki.ca_cert)
    except InputError:
        return  # no longer a readable signed PDF: refused, not verified
    assert not report.ok, [c.line() for c in report.checks]
