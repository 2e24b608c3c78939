"""`smoothcert certify --incremental-from`: rows through the records' one writer, and every bad input refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from certification.cli import main
from certification.errors import InputError
from certification.fileio import sha256_file
from certification.records import parse_certify_records, read_certify_records
from support.oracle import linear_onnx, points_at_margins, write_split

CHW = (1, 4, 4)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("incremental-run")
    rng = np.random.default_rng(3)
    w = rng.choice([-1.0, 1.0], size=CHW) * rng.uniform(0.8, 1.2, size=CHW)
    margins = np.linspace(-0.5, 0.5, 12)
    points = points_at_margins(w, 0.3, np.full(CHW, 0.5), margins)
    files = {"dir": d, "f": linear_onnx(d / "f.onnx", w, 0.3, CHW), "fa": linear_onnx(d / "fa.onnx", w, 0.3 - 0.05 * float(np.linalg.norm(w)), CHW),
             "data": write_split(d / "test.npz", points, (margins > 0).astype(np.int64)), "original": d / "full.jsonl"}
    assert main(["certify", "--model", str(files["f"]), "--data", str(files["data"]), "--sigma", "0.25", "--n0", "50", "--n", "2000",
                 "--alpha", "0.001", "--seed", "4", "--threads", "1", "--out", str(files["original"])]) == 0
    return files


def _args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    args = ["certify", "--model", str(files["fa"]), "--data", str(files["data"]), "--sigma", "0.25", "--seed", "4", "--alpha", "0.001",
            "--threads", "1", "--incremental-from", str(files["original"]), "--original-model", str(files["f"]), "--n-p", "400",
            "--out", str(out)]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def test_incremental_rows_name_the_approximate_model_and_the_original_file(files):
    out, summary = files["dir"] / "inc" / "certify.jsonl", files["dir"] / "inc" / "certify.json"
    assert main(_args(files, out, "--summary", str(summary))) == 0
    rows, original = read_certify_records(out), read_certify_records(files["original"])
    assert [r.index for r in rows] == [r.index for r in original] and out.with_suffix(".tsv").is_file()
    for row, full in zip(rows, original):
        assert row.model_sha256 == sha256_file(files["fa"]) and row.alpha == pytest.approx(0.002)
        assert row.incremental["from_sha256"] == sha256_file(files["original"])
        assert row.incremental["original_model_sha256"] == full.model_sha256 == sha256_file(files["f"])
        assert row.p_lower == pytest.approx(max(0.0, full.p_lower - row.incremental["zeta_upper"]))
        assert row.radius <= full.radius and (row.prediction == -1 or row.prediction == full.prediction)
    assert any(not r.abstained for r in rows)
    assert json.loads(summary.read_text())["model"]["sha256"] == sha256_file(files["fa"])
    # the one reader refuses an incremental row whose bound does not follow from its parts
    line = json.loads(out.read_text().splitlines()[-1])
    line["p_lower"] = min(1.0, line["p_lower"] + 0.01)
    with pytest.raises(InputError, match="original_p_lower - zeta_upper"):
        parse_certify_records(json.dumps(line))


def test_every_bad_input_is_one_line_and_no_output(files, capsys):
    d = files["dir"]
    other = linear_onnx(d / "other.onnx", np.ones(CHW), -8.0, CHW)
    cases = {
        "records of another model": (("--original-model", str(other)), "was certified on model"),
        "another sigma": (("--sigma", "0.5"), "sigma 0.25, not --sigma 0.5"),
        "another seed": (("--seed", "5"), "seed 4, not --seed 5"),
        "another split": (("--data", str(write_split(d / "other.npz", np.full((12, *CHW), 0.5, np.float32), np.zeros(12)))),
                          "was certified on data"),
        "missing file": (("--incremental-from", str(d / "nope.jsonl")), "not found"),
        "no original model": (("--original-model", "DROP"), "needs --original-model"),
        "n_p zero": (("--n-p", "0"), "n_p must"),
        "subset": (("--max-examples", "3"), "--max-examples does not apply"),
    }
    for name, (override, fragment) in cases.items():
        out = d / name.replace(" ", "_") / "certify.jsonl"
        args = _args(files, out, *override)
        if override[1] == "DROP":
            at = args.index("--original-model")
            del args[at:at + 2]
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (name, err)
        assert not out.exists() and not out.with_suffix(".tsv").exists(), name
    # an incremental file is not an original one
    inc = d / "chain" / "certify.jsonl"
    assert main(_args(files, inc)) == 0
    assert main(_args(files, d / "chain2" / "c.jsonl", "--incremental-from", str(inc), "--original-model", str(files["fa"]))) == 2
    assert "itself an incremental certificate" in capsys.readouterr().err
