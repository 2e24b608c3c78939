"""Training methods (gaussian, consistency, MACER): losses against hand-computed values, class weighting, method
selection in the training loop and the train stage, bad params."""
from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest
import torch
import torch.nn.functional as F

from certification.data import synthetic
from certification.errors import InputError
from certification.training import TrainConfig, train_model
from certification.training_losses import (ConsistencyParams, MacerParams, class_weight_vector, consistency_loss,
                                           gaussian_loss, macer_loss, soft_margin, weighted_mean)
import yaml

TINY_PARAMS = {
    "data": {"source": "synthetic", "path": "", "image_size": 28, "n_train": 120, "n_val": 40, "n_test": 10, "seed": 3,
             "classes": [], "malignant_classes": []},
    "train": {"sigma": 0.25, "epochs": 1, "batch_size": 64, "lr": 0.01, "weight_decay": 0.0005, "width": 4, "seed": 1,
              "portable_kernels": True, "method": "gaussian", "class_weights": {},
              "consistency": {"m": 2, "lambda": 10.0, "eta": 0.5}, "macer": {"k": 2, "lambda": 12.0, "gamma": 8.0, "beta": 16.0}},
}

CLASSES = list(synthetic.CLASS_NAMES)


def write_params(path, params) -> None:
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMOOTHCERT_TRACKING", "off")
    monkeypatch.setenv("SMOOTHCERT_TORCH_THREADS", "1")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


def test_consistency_loss_matches_a_hand_computed_value():
    # one image, two classes, m = 2 copies: softmax [1/2, 1/2] and [3/4, 1/4]; true class 0
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    labels = torch.tensor([0])
    ce = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    mean = (0.625, 0.375)
    kl1 = 0.625 * math.log(0.625 / 0.5) + 0.375 * math.log(0.375 / 0.5)
    kl2 = 0.625 * math.log(0.625 / 0.75) + 0.375 * math.log(0.375 / 0.25)
    entropy = -(mean[0] * math.log(mean[0]) + mean[1] * math.log(mean[1]))
    lam, eta = 10.0, 0.5
    expected = ce + lam * (kl1 + kl2) / 2 + eta * entropy
    assert float(consistency_loss(logits, labels, lam, eta)) == pytest.approx(expected, rel=1e-5)
    # lambda = eta = 0 leaves the cross-entropy averaged over the copies
    assert float(consistency_loss(logits, labels, 0.0, 0.0)) == pytest.approx(ce, rel=1e-6)


def test_consistency_loss_of_identical_copies_has_no_kl_term():
    torch.manual_seed(0)
    one = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    same = torch.stack([one, one, one])
    p = F.softmax(one, -1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    assert float(consistency_loss(same, labels, 100.0, 0.0)) == pytest.approx(float(F.cross_entropy(one, labels)), rel=1e-5)
    assert float(consistency_loss(same, labels, 0.0, 1.0)) - float(F.cross_entropy(one, labels)) == pytest.approx(entropy, rel=1e-4)


def test_macer_loss_matches_a_hand_computed_value():
    # k = 1 copy, two classes, beta = 1: p1 = sigmoid(a), margin = Phi^-1(p1) - Phi^-1(1 - p1) = 2 Phi^-1(p1)
    a, sigma, lam, gamma = 1.5, 0.25, 12.0, 8.0
    logits = torch.tensor([[[a, 0.0]]])
    labels = torch.tensor([0])
    p1 = 1 / (1 + math.exp(-a))
    margin = 2 * NormalDist().inv_cdf(p1)
    got_margin, correct = soft_margin(logits, labels, 1.0)
    assert bool(correct[0]) and float(got_margin[0]) == pytest.approx(margin, rel=1e-5)
    expected = -math.log(p1) + lam * sigma / 2 * (gamma - margin)
    assert float(macer_loss(logits, labels, sigma, lam, gamma, 1.0)) == pytest.approx(expected, rel=1e-5)
    # misclassified: no hinge, only the cross-entropy of the smoothed soft classifier
    wrong = torch.tensor([1])
    assert float(macer_loss(logits, wrong, sigma, lam, gamma, 1.0)) == pytest.approx(-math.log(1 - p1), rel=1e-5)
    # beyond gamma the hinge is 0
    assert float(macer_loss(logits, labels, sigma, lam, 0.5 * margin, 1.0)) == pytest.approx(-math.log(p1), rel=1e-5)


def test_class_weights_weight_each_images_loss():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    per_image = F.cross_entropy(logits, labels, reduction="none")
    weights = class_weight_vector({"melanoma": 3.0}, CLASSES, 4)  # class 2 weighs 3, the others 1
    assert weights.tolist() == [1.0, 1.0, 3.0, 1.0]
    expected = (per_image[0] + 3 * per_image[1]) / 4
    assert float(gaussian_loss(logits, labels, weights)) == pytest.approx(float(expected), rel=1e-6)
    assert float(gaussian_loss(logits, labels, weights)) > float(gaussian_loss(logits, labels))  # the hard image counts more
    # the consistency and MACER terms are weighted per image too
    copies = torch.stack([logits, logits + torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])])
    one = [float(consistency_loss(copies[:, i:i + 1], labels[i:i + 1], 10.0, 0.5)) for i in range(2)]
    assert float(consistency_loss(copies, labels, 10.0, 0.5, weights)) == pytest.approx((one[0] + 3 * one[1]) / 4, rel=1e-5)
    one = [float(macer_loss(copies[:, i:i + 1], labels[i:i + 1], 0.25, 12.0, 8.0, 16.0)) for i in range(2)]
    assert float(macer_loss(copies, labels, 0.25, 12.0, 8.0, 16.0, weights)) == pytest.approx((one[0] + 3 * one[1]) / 4, rel=1e-5)
    # weight 0 removes a class from the loss
    zero = class_weight_vector({"nevus": 0.0}, CLASSES, 4)
    assert float(weighted_mean(per_image, labels, zero)) == pytest.approx(float(per_image[1]))


def test_class_weights_all_one_mean_the_unweighted_loss():
    assert class_weight_vector({}, CLASSES, 4) is None
    assert class_weight_vector({"melanoma": 1.0, "basal_cell_carcinoma": 1}, CLASSES, 4) is None


@pytest.mark.parametrize("weights, message", [
    ({"melanome": 2.0}, "unknown class 'melanome'"),
    ({"melanoma": -1.0}, "must be a finite number >= 0"),
    ({"melanoma": float("nan")}, "must be a finite number >= 0"),
    ({name: 0.0 for name in CLASSES}, "all 0"),
])
def test_bad_class_weights(weights, message):
    with pytest.raises(InputError, match=message):
        class_weight_vector(weights, CLASSES, 4)


@pytest.mark.parametrize("params, message", [
    ({"method": "adversarial"}, "unknown train.method 'adversarial'"),
    ({"consistency": {"m": 0, "lambda": 1.0, "eta": 0.5}}, r"consistency\.m must be an integer >= 1"),
    ({"consistency": {"m": 2, "lambda": -1.0, "eta": 0.5}}, r"consistency\.lambda must be a finite number >= 0"),
    ({"macer": {"k": 0, "lambda": 1.0, "gamma": 8.0, "beta": 16.0}}, r"macer\.k must be an integer >= 1"),
    ({"macer": {"k": 2, "lambda": 1.0, "gamma": 0.0, "beta": 16.0}}, r"macer\.gamma must be a finite number > 0"),
    ({"macer": [1, 2]}, "train macer must be a mapping"),
    ({"class_weights": ["melanoma"]}, "class_weights must be a mapping"),
])
def test_bad_method_params(params, message):
    with pytest.raises(InputError, match=message):
        TrainConfig.from_params(params)


def test_config_from_params_names_the_hyperparameters():
    config = TrainConfig.from_params({"method": "consistency", "consistency": {"m": 3, "lambda": 20, "eta": 0.5}})
    assert config.consistency == ConsistencyParams(m=3, lam=20.0, eta=0.5) and config.copies == 3
    assert config.hyperparameters() == {"m": 3, "lambda": 20.0, "eta": 0.5}
    assert TrainConfig.from_params({"method": "macer"}).hyperparameters() == MacerParams().to_dict()
    assert TrainConfig().hyperparameters() == {} and TrainConfig().copies == 1


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic.generate_split(200, 28, 3, "train"), synthetic.generate_split(60, 28, 3, "val")


def _train(data, **changes):
    train, val = data
    config = TrainConfig(sigma=0.25, epochs=1, batch_size=64, width=4, seed=1, **changes)
    return train_model(train.images, train.labels, val.images, val.labels, 4, config, threads=1,
                       extra_config={"class_names": CLASSES})


def _weights(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_method_selects_the_objective(tiny_data):
    gaussian = _weights(_train(tiny_data))
    # explicit all-one class weights are the unweighted baseline, bit for bit
    assert _same(gaussian, _weights(_train(tiny_data, class_weights={"melanoma": 1.0})))
    assert not _same(gaussian, _weights(_train(tiny_data, class_weights={"melanoma": 3.0})))
    consistency = _weights(_train(tiny_data, method="consistency"))
    macer = _weights(_train(tiny_data, method="macer", macer=MacerParams(k=2)))
    assert not _same(gaussian, consistency) and not _same(gaussian, macer) and not _same(consistency, macer)
    assert _same(consistency, _weights(_train(tiny_data, method="consistency")))  # deterministic


def test_unknown_class_weight_name_fails_in_training(tiny_data):
    with pytest.raises(InputError, match="unknown class 'melanom'"):
        _train(tiny_data, class_weights={"melanom": 2.0})


def test_train_stage_records_the_method(workdir):
    from pipeline import data, train

    params = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "method": "consistency", "class_weights": {"melanoma": 2.0}}}
    write_params(workdir / "params.yaml", params)
    data.main()
    train.main()
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert metrics["method"] == "consistency" and metrics["hyperparameters"] == {"m": 2, "lambda": 10.0, "eta": 0.5}
    assert metrics["noisy_copies_per_image"] == 2
    assert metrics["class_weights"] == {"nevus": 1.0, "seborrheic_keratosis": 1.0, "melanoma": 2.0, "basal_cell_carcinoma": 1.0}


def test_train_stage_rejects_an_unknown_class_name_without_outputs(workdir):
    from pipeline import data, train

    params = {**TINY_PARAMS, "data": {**TINY_PARAMS["data"], "n_train": 20, "n_val": 10, "n_test": 10},
              "train": {**TINY_PARAMS["train"], "class_weights": {"melanome": 2.0}}}
    write_params(workdir / "params.yaml", params)
    data.main()
    with pytest.raises(InputError, match="unknown class 'melanome'; classes of the data: nevus"):
        train.main()
    assert not (workdir / "models").exists() and not (workdir / "metrics/train.json").exists()


def test_lighting_noise_is_added_after_the_isotropic_draws_within_the_lighting_span():
    from certification.lighting import LightingCovariance
    from certification.training import add_noise, lighting_basis

    config = TrainConfig(sigma=0.25, lighting_directions="dc+ramps", lighting_tau=0.05)
    basis = lighting_basis(config, (3, 8, 8))
    zeros = torch.zeros(512, 3, 8, 8)
    plain = add_noise(zeros, 0.25, torch.Generator().manual_seed(4))
    lit = add_noise(zeros, 0.25, torch.Generator().manual_seed(4), basis)
    v = torch.tensor(LightingCovariance.build("dc+ramps", 0.05, 0.25, (3, 8, 8)).basis, dtype=torch.float32)
    extra = (lit - plain).reshape(512, -1)
    assert float((extra - (extra @ v.T) @ v).abs().max()) < 1e-5  # only along the lighting directions
    along = (lit.reshape(512, -1) @ v.T).var(dim=0) / (0.25**2 + (0.05**2) * 192)
    assert float((along - 1).abs().max()) < 5 * math.sqrt(2 / 512)
    assert lighting_basis(TrainConfig(sigma=0.25), (3, 8, 8)) is None
    with pytest.raises(InputError, match="set on a sigma of 0"):
        TrainConfig(sigma=0.0, lighting_directions="dc", lighting_tau=0.05).validate()


def test_train_stage_takes_certify_lighting_when_its_own_is_null(workdir):
    from pipeline import data, train

    params = {**TINY_PARAMS, "train": {**TINY_PARAMS["train"], "lighting": None},
              "certify": {"lighting": {"directions": "dc", "tau": 0.05}}}
    write_params(workdir / "params.yaml", params)
    data.main()
    train.main()
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert metrics["lighting"] == {"directions": "dc", "tau": 0.05}
    checkpoint = torch.load(workdir / "models/model.pt", weights_only=False)
    assert checkpoint["config"]["train_lighting"] == {"directions": "dc", "tau": 0.05}
