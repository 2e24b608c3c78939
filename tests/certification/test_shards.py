"""Sharded certification (`certify --shard K/N` + `smoothcert merge`) equals a single-machine run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from certification.cli import main
from certification.fileio import sha256_file
from support.oracle import conv_onnx, write_split

CHW = (3, 8, 8)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    model = conv_onnx(tmp_path / "model.onnx", CHW, num_classes=4, seed=5)
    data = write_split(tmp_path / "test.npz", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, size=12))
    return {"model": model, "data": data, "dir": tmp_path}


def _certify(files: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["certify", "--model", str(files["model"]), "--data", str(files["data"]), "--sigma", "0.25", "--n0", "20",
                 "--n", "200", "--alpha", "0.01", "--batch-size", "50", "--seed", "9", "--max-examples", "10",
                 "--threads", "1", "--out", str(out), *extra])


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_three_shards_merge_to_the_single_run(files: dict[str, Path]) -> None:
    whole = files["dir"] / "whole.jsonl"
    assert _certify(files, whole) == 0
    shards = [files["dir"] / f"shard{k}.jsonl" for k in range(3)]
    for k, shard in enumerate(shards):
        assert _certify(files, shard, "--shard", f"{k}/3", "--summary", str(shard.with_suffix(".json"))) == 0
    merged = files["dir"] / "merged.jsonl"
    summary = files["dir"] / "summary.json"
    assert main(["merge", *map(str, reversed(shards)), "--out", str(merged), "--summary", str(summary)]) == 0
    assert _rows(merged) == sorted(_rows(whole), key=lambda r: r["index"])
    document = json.loads(summary.read_text())
    assert document["n_examples"] == 10 and document["params"]["max_examples"] == 10 and document["runtime"]["shards"] == 3


def test_merge_refuses_missing_duplicate_and_mixed_shards(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    shards = [files["dir"] / f"shard{k}.jsonl" for k in range(2)]
    for k, shard in enumerate(shards):
        assert _certify(files, shard, "--shard", f"{k}/2") == 0
    out = files["dir"] / "merged.jsonl"
    common = ["--out", str(out), "--data", str(files["data"]), "--max-examples", "10"]
    assert main(["merge", str(shards[0]), *common]) == 2
    assert "in no shard" in capsys.readouterr().err
    assert main(["merge", str(shards[0]), str(shards[0]), str(shards[1]), *common]) == 2
    assert "more than one shard" in capsys.readouterr().err
    other = files["dir"] / "other.jsonl"
    rows = [json.loads(line) for line in shards[1].read_text().splitlines()]
    other.write_text("".join(json.dumps({**r, "alpha": 0.05}) + "\n" for r in rows))
    assert main(["merge", str(shards[0]), str(other), *common]) == 2
    assert "alpha" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("shard", ["3/3", "a/b", "1", "0/0"])
def test_bad_shard_spec(files: dict[str, Path], shard: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = files["dir"] / "x.jsonl"
    assert _certify(files, out, "--shard", shard) == 2
    assert "--shard" in capsys.readouterr().err and not out.exists()


def test_merge_refuses_a_shard_of_another_model_or_data(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Every row names its model and data split, so a shard certified on another model cannot join the run even
    without the shards' summaries."""
    shards = [files["dir"] / f"shard{k}.jsonl" for k in range(2)]
    for k, shard in enumerate(shards):
        assert _certify(files, shard, "--shard", f"{k}/2") == 0
    rows = [json.loads(line) for line in shards[1].read_text().splitlines()]
    assert {r["model_sha256"] for r in rows} == {sha256_file(files["model"])}
    assert {r["data_sha256"] for r in rows} == {sha256_file(files["data"])}
    for key in ("model_sha256", "data_sha256"):
        other = files["dir"] / f"other_{key}.jsonl"
        other.write_text("".join(json.dumps({**r, key: "ef" * 32}) + "\n" for r in rows))
        assert main(["merge", str(shards[0]), str(other), "--out", str(files["dir"] / "merged.jsonl")]) == 2
        assert f"{key} = 'efef" in capsys.readouterr().err
    unnamed = files["dir"] / "unnamed.jsonl"
    unnamed.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "model_sha256"}) + "\n" for r in rows))
    assert main(["merge", str(shards[0]), str(unnamed), "--out", str(files["dir"] / "merged.jsonl")]) == 2
    assert "missing key 'model_sha256'" in capsys.readouterr().err
    assert not (files["dir"] / "merged.jsonl").exists()
