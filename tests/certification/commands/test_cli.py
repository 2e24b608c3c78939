"""`smoothcert certify` / `smoothcert predict`: outputs, resume after a kill, and every bad input of issue 3."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from certification.certify_run import partial_path_for
from certification.shards import select_indices
from certification.cli import main
from support.oracle import conv_onnx, write_split
from support import REPO

CHW = (3, 8, 8)
SMOOTHCERT = [sys.executable, "-m", "certification.cli"]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    model = conv_onnx(tmp_path / "model.onnx", CHW, num_classes=4, seed=5)
    data = write_split(tmp_path / "test.npz", rng.integers(0, 256, size=(10, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, size=10))
    return {"model": model, "data": data, "out": tmp_path / "out" / "certify.jsonl", "dir": tmp_path}


def _certify_args(files: dict[str, Path], *extra: str, n: int = 300) -> list[str]:
    return ["certify", "--model", str(files["model"]), "--data", str(files["data"]), "--sigma", "0.25", "--n0", "20",
            "--n", str(n), "--alpha", "0.01", "--batch-size", "64", "--seed", "3", "--threads", "1", "--out", str(files["out"]), *extra]


def _strip_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_certify_writes_jsonl_tsv_and_summary(files, capsys) -> None:
    summary = files["dir"] / "metrics" / "certify.json"
    assert main(_certify_args(files, "--max-examples", "6", "--summary", str(summary))) == 0
    records = _read_jsonl(files["out"])
    assert [r["index"] for r in records] == select_indices(10, 6, 3).tolist()
    required = {"index", "label", "prediction", "correct", "radius", "n0", "n", "n_a", "alpha", "sigma", "seed", "seconds", "counts_selection", "counts_estimation"}
    assert all(required <= set(r) and sum(r["counts_estimation"]) == 300 and len(r["counts_selection"]) == 4 for r in records)
    tsv = files["out"].with_suffix(".tsv").read_text().splitlines()
    assert tsv[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime" and len(tsv) == 7
    idx, label, predict, radius, correct, _ = tsv[1].split("\t")
    assert (int(idx), int(label), int(predict), float(radius), int(correct)) == (
        records[0]["index"], records[0]["label"], records[0]["prediction"], records[0]["radius"], int(records[0]["correct"]))
    metrics = json.loads(summary.read_text())
    assert metrics["n_examples"] == 6 and metrics["bound_method"] == "clopper-pearson-minus-alpha"
    assert metrics["clean_accuracy"]["successes"] == sum(r["correct"] for r in records)
    assert metrics["throughput"]["samples_per_second"] > 0
    assert not partial_path_for(files["out"]).exists()


def test_subset_keeps_counts_of_the_full_run(files) -> None:
    assert main(_certify_args(files)) == 0
    full = {r["index"]: r for r in _strip_time(_read_jsonl(files["out"]))}
    assert main(_certify_args(files, "--max-examples", "4", "--batch-size", "7")) == 0
    for r in _strip_time(_read_jsonl(files["out"])):
        assert r == full[r["index"]]


def test_predict_command(files) -> None:
    out = files["dir"] / "predict.jsonl"
    args = ["predict", "--model", str(files["model"]), "--data", str(files["data"]), "--sigma", "0.25", "--n", "200",
            "--alpha", "0.01", "--seed", "1", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    records = _read_jsonl(out)
    assert len(records) == 10 and set(records[0]) == {"index", "label", "prediction", "correct", "n", "alpha", "sigma", "seed"}
    assert all(r["prediction"] in (-1, 0, 1, 2, 3) for r in records)


def test_resume_after_kill_gives_identical_output(files) -> None:
    rng = np.random.default_rng(4)
    files["data"] = write_split(files["dir"] / "test24.npz", rng.integers(0, 256, size=(24, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, size=24))
    uninterrupted = files["dir"] / "whole.jsonl"
    args = _certify_args(files, n=4_000)
    assert main([*args[:-1], str(uninterrupted)]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*SMOOTHCERT, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = partial_path_for(files["out"])
    deadline = time.time() + 60
    while time.time() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 4):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not files["out"].exists(), "the kill must interrupt the run before it finishes"
    done = len(partial.read_text().splitlines()) - 1
    assert 3 <= done < 24
    with open(partial, "a") as handle:  # a line cut by the crash
        handle.write('{"index": 23, "lab')
    assert main(args) == 0
    assert _strip_time(_read_jsonl(files["out"])) == _strip_time(_read_jsonl(uninterrupted))
    assert files["out"].with_suffix(".tsv").exists() and not partial.exists()


def test_partial_file_of_another_run_is_discarded(files, capsys) -> None:
    partial = partial_path_for(files["out"])
    partial.parent.mkdir(parents=True)
    partial.write_text(json.dumps({"header": {"seed": 99}}) + "\n" + json.dumps({"index": 0}) + "\n")
    assert main(_certify_args(files)) == 0
    assert "different run" in capsys.readouterr().err
    assert len(_read_jsonl(files["out"])) == 10


# ------------------------------------------------------------------------------------------ bad input
def _float_split(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    labels = np.zeros(len(images), dtype=np.int64) if labels is None else labels
    return write_split(path, images.astype(np.float32), labels)


def _bad_inputs(files: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    d = files["dir"]
    good = np.full((3, *CHW), 0.5, dtype=np.float32)
    (d / "notonnx.onnx").write_text("this is not a model\n")
    nan = good.copy(); nan[0, 0, 0, 0] = np.nan
    inf = good.copy(); inf[1, 2, 3, 4] = np.inf
    big = good.copy(); big[2, 0, 0, 0] = 1.5
    neg = good.copy(); neg[0, 1, 1, 1] = -0.1
    cases = {
        "missing model": (["--model", str(d / "nope.onnx")], "not found"),
        "non-ONNX model": (["--model", str(d / "notonnx.onnx")], "not a loadable ONNX model"),
        "input shape mismatch": (["--model", str(conv_onnx(d / "big.onnx", (3, 16, 16)))], "expects"),
        "output rank 1": (["--model", str(conv_onnx(d / "r1.onnx", CHW, output_rank=1))], "expected (N, K)"),
        "output rank 3": (["--model", str(conv_onnx(d / "r3.onnx", CHW, output_rank=3))], "expected (N, K)"),
        "NaN data": (["--data", str(_float_split(d / "nan.npz", nan))], "NaN or inf"),
        "inf data": (["--data", str(_float_split(d / "inf.npz", inf))], "NaN or inf"),
        "data above 1": (["--data", str(_float_split(d / "big.npz", big))], "[0, 1]"),
        "data below 0": (["--data", str(_float_split(d / "neg.npz", neg))], "[0, 1]"),
        "label out of range": (["--data", str(_float_split(d / "lab.npz", good, np.array([0, 4, 1])))], "outside the class range"),
        "negative label": (["--data", str(_float_split(d / "neglab.npz", good, np.array([0, -1, 1])))], "outside the class range"),
        "sigma zero": (["--sigma", "0"], "sigma"),
        "sigma negative": (["--sigma", "-0.5"], "sigma"),
        "sigma 1e308": (["--sigma", "1e308"], "far beyond the [0, 1] pixel range"),
        "radii negative with summary": (["--radii", "-1", "--summary", str(d / "out" / "s.json")], "radii must be"),
        "confidence 1.5 with summary": (["--confidence", "1.5", "--summary", str(d / "out" / "s.json")], "confidence must"),
        "alpha zero": (["--alpha", "0"], "alpha"),
        "alpha half": (["--alpha", "0.5"], "alpha"),
        "alpha above half": (["--alpha", "0.9"], "alpha"),
        "n0 zero": (["--n0", "0"], "n0"),
        "n zero": (["--n", "0"], "n must"),
        "batch size zero": (["--batch-size", "0"], "batch size"),
        "noise threads zero": (["--noise-threads", "0"], "noise threads"),
    }
    return cases


def _with(args: list[str], override: list[str]) -> list[str]:
    args = list(args)
    for flag, value in zip(override[::2], override[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


def test_every_bad_input_exits_2_with_one_line_and_no_output(files, capsys) -> None:
    for name, (override, fragment) in _bad_inputs(files).items():
        code = main(_with(_certify_args(files), override))
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and err.startswith("smoothcert certify: error:") and fragment in err, (name, err)
        assert not files["out"].parent.exists() or not any(files["out"].parent.iterdir()), name


def test_bad_input_from_a_real_process(files) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([*SMOOTHCERT, *_with(_certify_args(files), ["--alpha", "0.7"])], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and not files["out"].exists()


def test_predict_bad_input(files, capsys) -> None:
    out = files["dir"] / "p.jsonl"
    args = ["predict", "--model", str(files["model"]), "--data", str(files["data"]), "--sigma", "-1", "--out", str(out)]
    assert main(args) == 2 and "sigma" in capsys.readouterr().err and not out.exists()


def test_certify_runs_without_the_dossier_and_signing_stack(files) -> None:
    """A machine with only the numerical stack (a certification worker) can certify: neither the command line
    nor certify imports pypdf, pyHanko, reportlab, mlflow or torch."""
    blocked = ("pypdf", "pyhanko", "reportlab", "mlflow", "torch")
    program = (  # a finder that answers "not installed" for the blocked packages, as on such a machine
        "import importlib.abc, sys\n"
        "class NotInstalled(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        "from certification.cli import main\nsys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", program, *_certify_args(files, "--max-examples", "2")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert len(_read_jsonl(files["out"])) == 2


def test_a_second_run_on_the_same_output_stops_at_once(files, capsys) -> None:
    from certification.certify_run import run_lock

    files["out"].parent.mkdir(parents=True)
    with run_lock(files["out"]):
        assert main(_certify_args(files)) == 2
    assert "another certification run is writing this output" in capsys.readouterr().err
    assert not files["out"].exists()
    assert main(_certify_args(files)) == 0  # the lock is gone with the first run


def test_decide_refuses_a_first_look_beyond_n_max(files, capsys) -> None:
    out = files["dir"] / "decide.jsonl"
    args = ["decide", "--model", str(files["model"]), "--data", str(files["data"]), "--sigma", "0.25", "--radius", "0.1",
            "--n-max", "200", "--first-look", "500", "--threads", "1", "--out", str(out)]
    assert main(args) == 2
    assert "first look 500 must be an integer in [1, n_max = 200]" in capsys.readouterr().err and not out.exists()
