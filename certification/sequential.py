"""Fast sequential decision: is each example certified at one radius R? Stop sampling as soon as it is known.

A merge gate needs, per example, only the answer to "is the smoothed classifier g constant on the L2 ball of
radius R around x?" (and whether its class is the label), not the exact radius. That is the hypothesis test

    H1: p_c >= Phi(R / sigma)   versus   H0: p_c < Phi(R / sigma),

where c is the top class of the base classifier f under noise and p_c = P(f(x + e) = c), e ~ N(0, sigma^2 I)
(by Cohen et al.'s Theorem 1 with p_B <= 1 - p_c, p_c > 1/2 and p_c >= Phi(R/sigma) imply g(x') = c for every
||x' - x||_2 < R). Radii and sigma are L2 norms in [0, 1]-pixel units.

Procedure (SEQUENTIAL-DECIDE), for one example:

1. Selection: n0 draws of the selection stream (seed, index, phase 0), exactly CERTIFY's, choose c = argmax.
2. Estimation: draws of the estimation stream (seed, index, phase 1), exactly CERTIFY's, are taken in growing
   installments up to the looks n_1 < n_2 < ... < n_L = n_max (default 100, 300, 1000, 3000, ..., n_max).
   At look k, with n_a = count of c in the first n_k draws, compute one-sided Clopper-Pearson bounds at level
   alpha / L each: lower_k and upper_k.
3. Certified at R as soon as lower_k >= Phi(R/sigma); not certified as soon as upper_k < Phi(R/sigma).
   The prediction question (the abstention of CERTIFY, threshold 1/2) is answered from the same bounds:
   predicts c once lower_k >= 1/2, abstains once upper_k < 1/2. Sampling stops when both questions are
   decided (or, with ``resolve_abstention=False``, when the first is); at the last look an undecided question
   is answered conservatively: not certified, abstain.

Guarantee (the same per-example level alpha as fixed-n CERTIFY). By the union bound over the L looks, with
probability at least 1 - alpha over the estimation noise, lower_k <= p_c for every k simultaneously, whatever
the stopping rule. Hence P(declared certified at R and p_c < Phi(R/sigma)) <= alpha, and likewise
P(declared predicting c and p_c < 1/2) <= alpha, for any selected c (selection uses independent draws).
Symmetrically, P(declared not certified early and p_c >= Phi(R/sigma)) <= alpha. Because each example has its
own noise streams, these failures are independent across examples, which is what the dataset-level bound of
:mod:`certification.dataset_bounds` (Clopper-Pearson minus alpha) needs. Budget: every example costs
n0 + n_k model evaluations for the look k at which it stopped, at most n0 + n_max.

With n_max = n, the last look uses exactly CERTIFY's n estimation draws, but at level alpha / L instead of
alpha, so an example whose CERTIFY radius is barely above R may be declared not certified (conservative).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from certification.errors import InputError
from certification.records import ABSTAIN, DecisionRecord
from certification.noise_sampling import PHASE_ESTIMATION, PHASE_SELECTION



def look_schedule(n_max: int, first: int = 100) -> tuple[int, ...]:
    """Sample sizes at which the test looks: first, 3*first, 10*first, 30*first, ... below n_max, then n_max.

    A candidate within a factor 1.5 of n_max is dropped (it would spend alpha on almost no new information).
    """
    if not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise InputError(f"n_max must be an integer of at least 1, got {n_max!r}")
    if not isinstance(first, (int, np.integer)) or first < 1:
        raise InputError(f"the first look must be an integer of at least 1, got {first!r}")
    looks: list[int] = []
    power = 0
    while True:
        for factor in (1, 3):
            candidate = int(first) * factor * 10**power
            if candidate * 1.5 > n_max:
                return (*looks, int(n_max))
            looks.append(candidate)
        power += 1


@dataclass(frozen=True)
class SequentialTest:
    """The per-example test: thresholds Phi(R/sigma) and 1/2, looks, and level alpha / L per bound."""

    radius: float
    sigma: float
    alpha: float
    looks: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius) and self.radius >= 0):
            raise InputError(f"radius must be a non-negative number ([0,1]-pixel L2 units), got {self.radius}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(f"sigma must be positive, got {self.sigma}")
        if not 0.0 < self.alpha < 0.5:
            raise InputError(f"alpha must lie in (0, 0.5), got {self.alpha}")
        if not self.looks or any(b <= a for a, b in zip(self.looks, self.looks[1:])) or self.looks[0] < 1:
            raise InputError(f"looks must be a strictly increasing list of positive sample sizes, got {list(self.looks)}")

    @property
    def threshold(self) -> float:
        """Phi(R / sigma): the top-class probability that certifies radius R."""
        return float(norm.cdf(self.radius / self.sigma))

    @property
    def level(self) -> float:
        """alpha / L: the level of each one-sided bound at each look."""
        return self.alpha / len(self.looks)

    def bounds(self, n_a: int, n: int) -> tuple[float, float]:
        """One-sided Clopper-Pearson lower and upper bounds on p_c, each at level alpha / L."""
        lower, upper = proportion_confint(n_a, n, alpha=2 * self.level, method="beta")
        return float(lower), float(upper)


@dataclass(frozen=True)
class LookOutcome:
    """Where the test stopped: ``n`` estimation draws (the look ``looks_used``), ``n_a`` successes, the bounds
    there, and the answers (``certified`` at R; ``predicts``: lower bound >= 1/2, else abstain)."""

    certified: bool
    predicts: bool
    n: int
    n_a: int
    looks_used: int
    p_lower: float
    p_upper: float


def run_test(test: SequentialTest, draw_successes: Callable[[int], int], resolve_abstention: bool = True) -> LookOutcome:
    """The looks of one example. ``draw_successes(m)`` draws the next m estimation samples and returns how many
    hit the selected class. Stops at the first look where the R question (and, when ``resolve_abstention``, the
    1/2 question) is decided; undecided at the last look means not certified / abstain."""
    n_a = drawn = 0
    lower = upper = float("nan")
    certified: bool | None = None
    used = 0
    for used, look in enumerate(test.looks, start=1):
        n_a += int(draw_successes(look - drawn))
        drawn = look
        lower, upper = test.bounds(n_a, look)
        certified = True if lower >= test.threshold else False if upper < test.threshold else None
        predicts = True if lower >= 0.5 else False if upper < 0.5 else None
        if certified is not None and (predicts is not None or not resolve_abstention):
            break
    return LookOutcome(bool(certified), lower >= 0.5, drawn, n_a, used, lower, upper)


def _decide_one(smoothed, x: np.ndarray, label: int, index: int, test: SequentialTest, n0: int, seed: int,
                resolve_abstention: bool) -> DecisionRecord:
    """One example's answer (a :class:`~certification.records.DecisionRecord`, mode ``sequential``): ``certified``
    means g is constant (class ``prediction``) on the ball of radius ``radius_threshold``, with probability of a
    false claim <= alpha; ``evaluations`` = n0 + estimation draws ``n``."""
    start = time.perf_counter()
    counts_selection = smoothed.count_stream(x, seed, index, PHASE_SELECTION).draw(n0)
    c_hat = int(np.argmax(counts_selection))
    estimation = smoothed.count_stream(x, seed, index, PHASE_ESTIMATION)
    outcome = run_test(test, lambda m: int(estimation.draw(m)[c_hat]), resolve_abstention)
    prediction = c_hat if outcome.predicts else ABSTAIN
    return DecisionRecord(
        index=int(index), label=int(label), prediction=prediction, certified=outcome.certified,
        correct=prediction == label and prediction != ABSTAIN, evaluations=int(n0) + outcome.n,
        radius_threshold=float(test.radius), alpha=float(test.alpha), sigma=float(test.sigma), n0=int(n0),
        n=outcome.n, n_a=outcome.n_a, seed=int(seed), mode="sequential", model_sha256=smoothed.base_classifier.sha256,
        details={"n_max": test.looks[-1], "looks_used": outcome.looks_used, "p_lower": outcome.p_lower,
                 "p_upper": outcome.p_upper, "seconds": time.perf_counter() - start,
                 "counts_selection": [int(c) for c in counts_selection], "abstention_resolved": resolve_abstention},
    )


def iter_decide(
    smoothed,
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    radius: float,
    n0: int,
    n_max: int,
    alpha: float,
    seed: int,
    indices: Sequence[int] | np.ndarray | None = None,
    first_look: int = 100,
    resolve_abstention: bool = True,
) -> Iterator[DecisionRecord]:
    """SEQUENTIAL-DECIDE each image of a float32 (N, C, H, W) batch in [0, 1] with ``smoothed`` (a
    SmoothedClassifier); example j uses the noise streams of index ``indices[j]`` (default j), the same streams as
    CERTIFY, so decisions are reproducible and independent of order and sharding. See the module docstring."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise InputError(f"images must be float32 (N, C, H, W), got shape {images.shape}")
    count = images.shape[0]
    index_list = list(range(count)) if indices is None else [int(i) for i in np.asarray(indices).reshape(-1)]
    label_list = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(index_list) != count or len(label_list) != count:
        raise InputError(f"need one index and one label per image ({count}), got {len(index_list)} and {len(label_list)}")
    if not isinstance(n0, (int, np.integer)) or n0 < 1:
        raise InputError(f"n0 must be an integer of at least 1, got {n0!r}")
    test = SequentialTest(float(radius), float(smoothed.sigma), float(alpha), look_schedule(n_max, min(first_look, n_max)))
    for x, label, index in zip(images, label_list, index_list):
        yield _decide_one(smoothed, x, label, index, test, int(n0), int(seed), resolve_abstention)


def decide_many(smoothed, images: np.ndarray, labels, radius: float, n0: int, n_max: int, alpha: float, seed: int,
                indices=None, first_look: int = 100, resolve_abstention: bool = True) -> list[DecisionRecord]:
    """The list of :func:`iter_decide`'s decisions."""
    return list(iter_decide(smoothed, images, labels, radius, n0, n_max, alpha, seed, indices, first_look,
                            resolve_abstention))
