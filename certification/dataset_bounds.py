"""Confidence bounds for dataset-level claims (certified accuracy, recall, clean accuracy).

Method ``clopper-pearson-minus-alpha``. Test examples are drawn i.i.d. from the population and each
example's certificate uses its own independent noise stream (seeded from (seed, example index)), so the
per-example indicators Y_i = 1[certificate claims "correct with radius >= r"] are i.i.d. Bernoulli(q).
Let p be the population rate at which the smoothed classifier is truly correct and constant on the L2 ball
of radius r. A claim without the truth is a certificate failure, which has probability at most alpha per
example (CERTIFY's guarantee), so q <= p + alpha. A one-sided Clopper-Pearson lower bound q_L at
confidence 1 - delta therefore gives p >= q_L - alpha with probability at least 1 - delta over both the
test-set sampling and the certification noise.

If noise were shared between examples the Y_i would be dependent and this bound would not hold; the
certification engine never shares noise between examples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from statsmodels.stats.proportion import proportion_confint

from certification.errors import InputError

CERTIFIED_BOUND_METHOD = "clopper-pearson-minus-alpha"
PROPORTION_METHOD = "clopper-pearson"


@dataclass(frozen=True)
class ProportionBound:
    """An estimated rate with a one-sided lower confidence bound (and, for plain rates, an upper bound).

    ``upper`` is ``None`` for certified rates: a certificate can under-claim (abstain, or report a radius
    below the true one) without limit, so claims give no upper bound on the true certified rate.
    """

    estimate: float
    lower: float
    upper: float | None
    successes: int
    trials: int
    confidence: float
    method: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _check(successes: int, trials: int, confidence: float) -> None:
    if trials < 1:
        raise InputError(f"a confidence bound needs at least one example, got {trials}")
    if not 0 <= successes <= trials:
        raise InputError(f"successes must lie in [0, {trials}], got {successes}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")


def _cp_one_sided(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson lower and upper bounds, each at level ``confidence``."""
    lower, upper = proportion_confint(successes, trials, alpha=2 * (1 - confidence), method="beta")
    return float(lower), float(upper)


def certified_rate_bound(successes: int, trials: int, alpha: float, confidence: float) -> ProportionBound:
    """Lower confidence bound on a population certified rate (method ``clopper-pearson-minus-alpha``).

    ``successes`` counts examples whose certificate claims the property (e.g. correct with radius >= r),
    ``trials`` the examples tested, ``alpha`` the per-example failure probability of CERTIFY.
    Guarantee: P(true rate >= lower) >= confidence, over test sampling and certification noise.
    """
    _check(successes, trials, confidence)
    if not 0.0 <= alpha < 1.0:
        raise InputError(f"alpha must lie in [0, 1), got {alpha}")
    lower, _ = _cp_one_sided(successes, trials, confidence)
    return ProportionBound(
        estimate=successes / trials,
        lower=max(0.0, lower - alpha),
        upper=None,
        successes=int(successes),
        trials=int(trials),
        confidence=float(confidence),
        method=CERTIFIED_BOUND_METHOD,
    )


def proportion_bound(successes: int, trials: int, confidence: float) -> ProportionBound:
    """Plain rate (e.g. accuracy) with one-sided Clopper-Pearson lower and upper bounds at ``confidence``."""
    _check(successes, trials, confidence)
    lower, upper = _cp_one_sided(successes, trials, confidence)
    return ProportionBound(
        estimate=successes / trials,
        lower=lower,
        upper=upper,
        successes=int(successes),
        trials=int(trials),
        confidence=float(confidence),
        method=PROPORTION_METHOD,
    )
