"""The sequential decision: its guarantee (simulated and on the analytic linear ONNX oracle), its noise streams,
and its agreement with fixed-n CERTIFY."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from certification.smoothing import SmoothedClassifier
from certification.errors import InputError
from certification.gate import Protocol, evaluate
from certification.certify_run import record_from_result
from certification.gate_io import decisions_from_certify
from certification.sequential import (SequentialTest, decide_many, log_evidence_above, log_evidence_below,
                                      look_schedule, run_looks, run_test)
from support.prespec import freeze_project_protocol
from support.oracle import linear_onnx, oracle_classifier, points_at_margins

SIGMA, RADIUS = 0.25, 0.25
CHW = (1, 4, 4)


def _ceiling(rate: float, trials: int, false_alarm: float = 1e-4) -> float:
    """Largest observed share consistent with a true rate <= ``rate`` (one-sided binomial test)."""
    return stats.binom.ppf(1 - false_alarm, trials, rate) / trials


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> tuple[SmoothedClassifier, np.ndarray, float]:
    return oracle_classifier(tmp_path_factory.mktemp("oracle"), seed=0, b=0.1, sigma=SIGMA, batch_size=500, chw=CHW)


def _points(w: np.ndarray, b: float, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = points_at_margins(w, b, np.full(CHW, 0.5), margins)
    assert images.min() >= 0.0 and images.max() <= 1.0
    return images, (np.asarray(margins) > 0).astype(np.int64)


def test_look_schedule() -> None:
    looks = look_schedule(10_000)
    assert looks[0] == 64 and looks[-1] == 10_000 and len(looks) == 24
    assert all(b == min(10_000, math.ceil(a * 1.25)) for a, b in zip(looks, looks[1:]))
    assert look_schedule(50) == (50,)
    assert look_schedule(10, first=4, growth=1.1) == (4, 5, 6, 7, 8, 9, 10)
    with pytest.raises(InputError):
        look_schedule(0)
    with pytest.raises(InputError):
        look_schedule(100, growth=1.0)


def test_mixture_is_a_supermartingale_and_its_bounds_are_its_crossings() -> None:
    """E[M_{n+1}(q) | S_n] <= M_n(q) exactly (two-point expectation) for p <= q, and L_n, U_n sit where the
    evidence crosses its barrier."""
    for q in (0.3, 0.5, 0.8413):
        for n, s in ((10, 7), (200, 150), (1000, 900), (3000, 2400)):
            now = float(log_evidence_above(s, n, q))
            for p in (q, q - 0.05, 0.0):
                with np.errstate(divide="ignore"):
                    after = np.logaddexp(np.log(p) + log_evidence_above(s + 1, n + 1, q),
                                         np.log1p(-p) + log_evidence_above(s, n + 1, q))
                assert after <= now + 1e-9
    test = SequentialTest(RADIUS, SIGMA, 0.001, look_schedule(10_000))
    lower, upper = test.bounds(900, 1000)
    assert lower < 0.9 < upper
    assert math.isclose(float(log_evidence_above(900, 1000, lower)), math.log(1 / test.alpha_sequence), abs_tol=1e-6)
    assert math.isclose(float(log_evidence_below(900, 1000, upper)), math.log(1 / test.futility), abs_tol=1e-6)
    # evidence against p <= q falls as q rises (so 'L_n >= q' and 'M_n(q) >= barrier' say the same thing)
    grid = np.linspace(0.01, 0.899, 300)
    assert all(
        float(log_evidence_above(900, 1000, a)) > float(log_evidence_above(900, 1000, b)) for a, b in zip(grid, grid[1:]))


def test_width_against_bonferroni_over_looks_is_as_documented() -> None:
    """The module docstring's figure: near t_R, for n in 10^3..10^4, L_n (alpha/2) lies between Clopper-Pearson's
    bounds at alpha/300 and alpha/80, i.e. it matches Bonferroni over about 150 looks."""
    test = SequentialTest(RADIUS, SIGMA, 0.001, look_schedule(10_000))
    for n, s in ((1000, 900), (1000, 870), (3000, 2600), (10_000, 8600)):
        lower, _ = test.bounds(s, n)
        assert stats.beta.ppf(0.001 / 300, s, n - s + 1) < lower < stats.beta.ppf(0.001 / 80, s, n - s + 1)


class _Peeking(SequentialTest):
    """A WRONG test that peeks at every look with a fixed-n Clopper-Pearson bound at the full alpha (to show the
    simulation would catch an invalid test)."""

    def answer(self, successes: np.ndarray, n: int, q: float) -> np.ndarray:
        s = np.atleast_1d(successes)
        lower = np.where(s > 0, stats.beta.ppf(self.alpha, np.maximum(s, 1), n - s + 1), 0.0)
        return np.where(lower >= q, 1, -1)


def _simulate(test: SequentialTest, p: float, reps: int, seed: int, resolve_abstention: bool = False) -> list:
    """``reps`` independent decisions on Bernoulli(p) draws, through the engine's own look loop."""
    rng = np.random.default_rng(seed)
    return run_looks(test, reps, lambda active, start, m: rng.binomial(m, p, size=len(active)), resolve_abstention)


@pytest.mark.parametrize("test_class,holds", [(SequentialTest, True), (_Peeking, False)])
def test_false_certification_rate_is_at_most_alpha_simulated(test_class: type, holds: bool) -> None:
    """Worst case: p_c just below Phi(R/sigma), 2,000 decisions (looks every 25% up to 2,000 draws, then the
    fallback). The share of false 'certified' stays within a binomial bound of alpha; the peeking test's does not."""
    test = test_class(RADIUS, SIGMA, 0.05, look_schedule(2000, first=20), final_share=0.5)
    outcomes = _simulate(test, test.threshold - 0.002, reps=2000, seed=5)
    false = sum(o.certified for o in outcomes)
    assert bool(false / len(outcomes) <= _ceiling(0.05, len(outcomes))) == holds
    if holds:  # both parts of the test are used
        assert {o.decided_by for o in outcomes} == {"sequence", "fixed_at_n_max"}


def test_power_just_above_the_threshold_simulated() -> None:
    """p_c = Phi(R/sigma) + 0.03, alpha 0.001, n_max 10,000: certified in >= 95% of 1,000 decisions, most of
    them before n_max; and a false 'predicts' stays within alpha at p just below 1/2."""
    test = SequentialTest(RADIUS, SIGMA, 0.001, look_schedule(10_000))
    outcomes = _simulate(test, test.threshold + 0.03, reps=1000, seed=6)
    assert np.mean([o.certified for o in outcomes]) >= 0.95
    assert np.median([o.n for o in outcomes]) < 10_000
    half = SequentialTest(0.0, SIGMA, 0.05, look_schedule(2000, first=20))
    wrong = sum(o.predicts for o in _simulate(half, 0.498, reps=2000, seed=8, resolve_abstention=True))
    assert wrong / 2000 <= _ceiling(0.05, 2000)
    rng = np.random.default_rng(9)  # the one-example runner is the same loop
    single = run_test(test, lambda m: int(rng.binomial(m, 0.999)))
    assert single.certified and single.predicts and single.n == 64


def test_decisions_do_not_depend_on_batch_size_or_noise_threads(tmp_path: Path) -> None:
    """Same rows (all but timing) with batch size 50 or 200 and 1 or 2 noise threads; the counts at the stopping
    look are CERTIFY's estimation counts over the same draws."""
    rows = {}
    for batch_size, threads in ((50, 1), (200, 2), (200, 1)):
        (tmp_path / f"{batch_size}-{threads}").mkdir()
        smoothed, w, b = oracle_classifier(tmp_path / f"{batch_size}-{threads}", seed=0, b=0.1, sigma=SIGMA,
                                           batch_size=batch_size, chw=CHW)
        smoothed.noise_threads = threads
        images, labels = _points(w, b, np.array([0.02, -0.05, 0.24, 0.26, 0.3, -0.4, 0.0005]))
        decided = decide_many(smoothed, images, labels, RADIUS, n0=50, n_max=3000, alpha=0.01, seed=4,
                              indices=[3, 8, 1, 30, 2, 9, 5])
        rows[(batch_size, threads)] = [{k: v for k, v in d.to_dict().items() if k != "seconds"} for d in decided]
    assert rows[(50, 1)] == rows[(200, 2)] == rows[(200, 1)]
    assert len({r["n"] for r in rows[(50, 1)]}) > 2  # examples stopped at different looks
    fixed = smoothed.certify_many(images[3:4], labels[3:4], n0=50, n=rows[(50, 1)][3]["n"], alpha=0.01, seed=4, indices=[30])
    assert fixed[0].n_a == rows[(50, 1)][3]["n_a"]


def test_count_stream_installments_equal_certify_draws(oracle) -> None:
    smoothed, w, b = oracle
    images, labels = _points(w, b, np.array([0.2, -0.1]))
    results = smoothed.certify_many(images, labels, n0=50, n=1000, alpha=0.01, seed=9, indices=[4, 11])
    for image, index, result in zip(images, [4, 11], results):
        stream = smoothed.count_stream(image, 9, index, phase=1)
        total = stream.draw(37) + stream.draw(0) + stream.draw(63) + stream.draw(900)
        assert total.tolist() == result.counts_estimation and stream.drawn == 1000
        assert smoothed.count_stream(image, 9, index, phase=0).draw(50).tolist() == result.counts_selection


def test_sequential_guarantee_on_the_linear_oracle(oracle) -> None:
    """Declared certified at R while the exact radius |w.x+b|/||w|| is below R: at most alpha of such examples."""
    smoothed, w, b = oracle
    alpha, n_below = 0.2, 300
    below = np.linspace(RADIUS - 0.004, RADIUS - 0.0005, n_below) * np.where(np.arange(n_below) % 2, 1, -1)
    above = np.linspace(RADIUS + 0.08, RADIUS + 0.3, 20) * np.where(np.arange(20) % 2, 1, -1)
    images, labels = _points(w, b, np.concatenate([below, above]))
    decisions = decide_many(smoothed, images, labels, RADIUS, n0=50, n_max=1000, alpha=alpha, seed=21)
    false = sum(d.certified for d in decisions[:n_below])
    assert false / n_below <= _ceiling(alpha, n_below)
    # power: clearly robust examples are certified, with the right class, after few samples
    robust = decisions[n_below:]
    assert all(d.certified and d.correct for d in robust)
    assert all(d.evaluations == d.n0 + d.n and d.n <= 1000 for d in decisions)
    assert np.mean([d.evaluations for d in robust]) < 400


def test_sequential_and_fixed_gates_agree_away_from_the_threshold(oracle) -> None:
    """Examples whose exact radius is not within 0.04 of R: same per-example answer, same gate verdict, far
    fewer model evaluations."""
    smoothed, w, b = oracle
    grid = np.linspace(0.0, 0.6, 31)
    grid = grid[np.abs(grid - RADIUS) > 0.04]
    margins = np.concatenate([grid, -grid[1::2]])
    images, labels = _points(w, b, margins)
    fixed = smoothed.certify_many(images, labels, n0=100, n=10_000, alpha=0.001, seed=3)
    sequential = decide_many(smoothed, images, labels, RADIUS, n0=100, n_max=10_000, alpha=0.001, seed=3)
    truth = np.abs(margins) >= RADIUS
    fixed_certified = np.array([r.prediction != -1 and r.radius >= RADIUS for r in fixed])
    sequential_certified = np.array([d.certified for d in sequential])
    assert fixed_certified.tolist() == truth.tolist() == sequential_certified.tolist()
    assert [r.prediction for r in fixed] == [d.prediction for d in sequential]
    assert sum(d.evaluations for d in sequential) * 5 < len(fixed) * 10_100

    certify_rows = [record_from_result(r, 0.001, SIGMA, 3, model_sha256=smoothed.base_classifier.sha256, data_sha256="d")
                    for r in fixed]
    protocol = {"radius": RADIUS, "min_certified_accuracy_lower": 0.4, "min_malignant_recall_lower": 0.5,
                "max_abstention_rate": 0.2, "min_clean_accuracy": 0.8, "confidence": 0.95}
    names, malignant = ["benign", "malignant"], ["malignant"]
    model_sha = smoothed.base_classifier.sha256
    read_off = decisions_from_certify(certify_rows, RADIUS, model_sha)
    by_fixed = evaluate(read_off, Protocol.from_dict({**protocol, "mode": "fixed"}), names, malignant, 0.001, model_sha)
    by_sequential = evaluate(sequential, Protocol.from_dict({**protocol, "mode": "sequential"}), names, malignant, 0.001,
                             model_sha)
    assert by_fixed.verdict == by_sequential.verdict
    assert by_fixed.failed == by_sequential.failed == ["certified_recall_malignant"]
    assert [c.bound for c in by_fixed.criteria] == [c.bound for c in by_sequential.criteria]
    assert [r.certified for r in read_off] == fixed_certified.tolist()


def test_abstention_is_decided_like_certify(oracle) -> None:
    """Near the decision boundary (exact radius ~0) both procedures abstain; R = 0 certifies any prediction."""
    smoothed, w, b = oracle
    images, labels = _points(w, b, np.array([0.001, -0.001, 0.3]))
    at_zero = decide_many(smoothed, images, labels, 0.0, n0=100, n_max=3000, alpha=0.001, seed=1)
    assert [d.prediction for d in at_zero[:2]] == [-1, -1] and not any(d.certified for d in at_zero[:2])
    assert at_zero[2].certified and at_zero[2].prediction == 1
    skipped = decide_many(smoothed, images, labels, RADIUS, n0=100, n_max=3000, alpha=0.001, seed=1, resolve_abstention=False)
    assert [d.certified for d in skipped] == [False, False, True]


def test_bad_parameters_are_input_errors(oracle) -> None:
    smoothed, w, b = oracle
    images, labels = _points(w, b, np.array([0.3]))
    for kwargs, message in [({"radius": -1.0}, "radius"), ({"alpha": 0.7}, "alpha"), ({"n_max": 0}, "n_max"),
                            ({"n0": 0}, "n0")]:
        args = {"radius": RADIUS, "n0": 10, "n_max": 100, "alpha": 0.01, **kwargs}
        with pytest.raises(InputError, match=message):
            decide_many(smoothed, images, labels, args["radius"], args["n0"], args["n_max"], args["alpha"], seed=0)


# ------------------------------------------------------------------ the pipeline's gate stage in both modes
def _oracle_project(root: Path, w: np.ndarray, b: float, mode: str) -> Path:
    """models/, data/test.npz (float32 NCHW points at known margins) and params.yaml for the gate stage."""
    import json

    import yaml

    from certification.fileio import sha256_file

    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    model = linear_onnx(root / "models" / "model.onnx", w, b, CHW)
    grid = np.linspace(0.02, 0.6, 24)
    grid = grid[np.abs(grid - RADIUS) > 0.04]
    margins = np.concatenate([grid, -grid[::2]])
    images, labels = _points(w, b, margins)
    np.savez(root / "data" / "test.npz", images=images, labels=labels)
    (root / "models" / "model.json").write_text(json.dumps(
        {"path": "models/model.onnx", "sha256": sha256_file(model), "class_names": ["benign", "malignant"],
         "malignant_classes": ["malignant"], "train_sigma": SIGMA}))
    (root / "params.yaml").write_text(yaml.safe_dump({
        "train": {"sigma": SIGMA},
        "certify": {"sigma": None, "n0": 100, "n": 10000, "alpha": 0.001, "max_examples": 0,
                    "seed": 3, "confidence": 0.95, "radii": [0.0, RADIUS]},
        "runtime": {"certify_batch_size": 1000},
        "gate": {"radius": RADIUS, "min_certified_accuracy_lower": 0.4, "min_malignant_recall_lower": 0.3,
                 "max_abstention_rate": 0.2, "min_clean_accuracy": 0.8, "confidence": 0.95, "mode": mode},
    }))
    freeze_project_protocol(root)
    return root


def test_gate_stage_fixed_and_sequential_agree(tmp_path: Path, oracle, monkeypatch) -> None:
    import json
    import os
    import subprocess
    import sys

    from certification.cli import main as cli_main

    _, w, b = oracle
    env = {**os.environ, "SMOOTHCERT_TRACKING": "off"}
    verdicts = {}
    for mode in ("fixed", "sequential"):
        root = _oracle_project(tmp_path / mode, w, b, mode)
        stages = (["pipeline.certify"] if mode == "fixed" else []) + ["pipeline.gate"]
        for stage in stages:
            done = subprocess.run([sys.executable, "-m", stage], cwd=root, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
        verdicts[mode] = json.loads((root / "metrics" / "gate.json").read_text())
        rows = [json.loads(line) for line in (root / "results" / "gate.jsonl").read_text().splitlines()]
        assert {row["mode"] for row in rows} == {mode} and len(rows) == len(np.load(root / "data" / "test.npz")["labels"])
        monkeypatch.chdir(root)  # the default --certify-json is the project's own metrics/certify.json, when it has one
        code = cli_main(["gate", "--results", "results/gate.jsonl", "--protocol", "params.yaml",
                         "--model-json", "models/model.json", "--data", "data/test.npz"])
        assert code == (0 if verdicts[mode]["verdict"] == "ACCEPT" else 1)
    fixed, sequential = verdicts["fixed"], verdicts["sequential"]
    assert fixed["verdict"] == sequential["verdict"] == "ACCEPT"
    assert [c["bound"] for c in fixed["criteria"]] == [c["bound"] for c in sequential["criteria"]]
    assert fixed["model_sha256"] == sequential["model_sha256"]
    assert fixed["protocol_sha256"] != sequential["protocol_sha256"]  # the mode is part of the protocol
    assert sequential["evaluations"]["total"] * 5 < fixed["evaluations"]["total"]


def test_decide_command_writes_the_documented_rows(tmp_path: Path, oracle) -> None:
    import json

    from certification.cli import main as cli_main

    _, w, b = oracle
    root = _oracle_project(tmp_path, w, b, "sequential")
    out = root / "decisions.jsonl"
    code = cli_main(["decide", "--radius", str(RADIUS), "--model", str(root / "models/model.onnx"), "--data",
                     str(root / "data/test.npz"), "--sigma", str(SIGMA), "--n0", "100", "--n-max", "10000",
                     "--alpha", "0.001", "--seed", "3", "--batch-size", "1000", "--max-examples", "10", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    for row in rows:
        assert {"index", "label", "prediction", "certified", "correct", "evaluations", "radius_threshold", "alpha"} <= set(row)
        assert row["evaluations"] == 100 + row["n"] and row["radius_threshold"] == RADIUS and row["alpha"] == 0.001
    args = ["decide", "--radius", str(RADIUS), "--model", str(root / "models/model.onnx"), "--data",
            str(root / "data/test.npz"), "--sigma", str(SIGMA), "--seed", "3", "--max-examples", "10", "--out", str(out)]
    assert cli_main(args + ["--certified-only"]) == 0
    quick = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["certified"] for r in quick] == [r["certified"] for r in rows]
    assert all(not r["abstention_resolved"] and r["evaluations"] <= full["evaluations"] for r, full in zip(quick, rows))
    assert cli_main(["decide", "--radius", "0.25", "--model", str(root / "models/model.onnx"), "--data",
                     str(root / "data/none.npz"), "--sigma", "0.25", "--out", str(out)]) == 2
