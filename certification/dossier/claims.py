"""Sentences of the dossier generated from the measurements, so that no claim can outrun its evidence.

* :func:`specification`: the robustness requirement, worded from the gate's criteria and confidence (the same
  numbers the gate judged), never a stronger "for every image" claim.
* :func:`coverage_sentences`: which lighting/camera changes the certificate covers. A change at a severity is
  "covered" only where the one-sided lower bound on the share of images whose change lies within their own
  certified radius reaches the specification's certified-accuracy threshold; everything else is named as not
  (or only partly) covered, with its share, bound and n.
* :func:`radius_note`: the radius in gray levels and the largest radius n and alpha can certify.
* :func:`lighting_sentences` (lighting runs only): the smoothing covariance, the lighting changes each certificate
  covers (median over the evaluated images), and which measured changes pass the exact ellipsoid test, by the same
  standard as :func:`coverage_sentences`.
"""
from __future__ import annotations

from typing import Any, Mapping


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def coverage_standard(ev: Mapping[str, Any]) -> float | None:
    """The lower bound a change's covered share must reach to be called covered: the certified-accuracy threshold."""
    crit = next((c for c in ev["verdict"]["criteria"] if c["name"] == "certified_accuracy"), None)
    return None if crit is None else float(crit["threshold"])


def coverage_word(row: Mapping[str, Any], standard: float | None) -> str:
    """'covered' (lower bound >= standard), 'partly covered' (some images covered) or 'not covered'."""
    if standard is not None and row["covered"]["lower"] >= standard:
        return "covered"
    return "partly covered" if row["covered"]["successes"] > 0 else "not covered"


def specification(ev: Mapping[str, Any]) -> list[str]:
    """The requirement as the gate judges it: one sentence per criterion, from metrics/gate.json."""
    v = ev["verdict"]
    conf = v["protocol"].get("confidence", ev["certify"]["confidence"])
    r = ev["claims"]["radius"]["gate"]
    out = [f"Robustness requirement (acceptance protocol SHA-256 {ev['hashes']['protocol_sha256'][:12]}..., judged by "
           f"the merge gate): a perturbation is any additive change delta of the image the model receives with "
           f"||delta||_2 <= r* = {_f(v['radius'])} in [0,1] pixel units (before the model's internal normalisation). "
           f"The requirement is a statement about the population of images, shown by one-sided confidence bounds at "
           f"confidence {_f(conf)}; it is not a guarantee for every image:"]
    for c in v["criteria"]:
        word = "lower" if c["bound_kind"] == "lower" else "upper"
        out.append(f"{c['description']}: its {word} confidence bound must be {c['comparison']} {_pct(c['threshold'])} "
                   f"(criterion {c['name']}).")
    cert = next((c for c in v["criteria"] if c["name"] == "certified_accuracy"), None)
    if cert is not None:
        out.append(f"So up to {_pct(1 - cert['threshold'])} of images may lack a correct certificate at r* while the "
                   f"requirement holds. r* = {_f(v['radius'])} equals {_f(r['even_gray_levels'], 2)} gray levels (of 255) "
                   f"on every one of the {r['values']} input values when spread evenly, or "
                   f"{_f(r['single_value_gray_levels'], 1)} gray levels on a single value.")
    return out


def radius_note(ev: Mapping[str, Any]) -> str:
    """Pixel terms of the gate radius and the certification's radius limit sigma * Phi^-1(alpha^(1/n))."""
    c, cl = ev["certify"], ev["claims"]["radius"]
    p, lim, r = c["params"], cl["limit"], cl["gate"]
    beyond = [x["radius"] for x in c["curve"] if x["radius"] >= lim["radius"]]
    text = (f"With n = {p['n']} and alpha = {p['alpha']}, the lower bound on p_A is at most alpha^(1/n) = "
            f"{lim['p_lower_max']:.6f}, so no certificate exceeds sigma * Phi^-1(alpha^(1/n)) = {_f(lim['radius'])}: "
            f"the curve ends there by construction, not because the model fails beyond it.")
    if beyond:
        text += (" Tabulated radii at or beyond this limit (" + ", ".join(_f(b) for b in beyond) +
                 ") are 0% by construction.")
    return text + (f" In pixel terms, r* = {_f(r['radius'])} is {_f(r['even_gray_levels'], 2)} gray levels per value "
                   f"spread evenly over {r['values']} values, or {_f(r['single_value_gray_levels'], 1)} gray levels on one value.")


def _setting(row: Mapping[str, Any]) -> str:
    return (f"{row['name']} severity {row['severity']} ({_pct(row['covered']['estimate'])}, lower "
            f"{_pct(row['covered']['lower'])}, {row['covered']['successes']}/{row['n']})")


def coverage_sentences(ev: Mapping[str, Any]) -> list[str]:
    """What the certificate covers among the measured lighting and camera changes, and what it does not."""
    rows = ev["claims"]["coverage"]
    if not rows:
        return ["No lighting or camera change was measured (metrics/evaluate.json has no corruption study); the "
                "certificate is not claimed to cover any."]
    std = coverage_standard(ev)
    conf = ev["claims"]["coverage_confidence"]
    words = {id(r): coverage_word(r, std) for r in rows}
    covered = [r for r in rows if words[id(r)] == "covered"]
    partly = [r for r in rows if words[id(r)] == "partly covered"]
    names = list(dict.fromkeys(r["name"] for r in rows))
    never = [n for n in names if all(words[id(r)] == "not covered" for r in rows if r["name"] == n)]
    out = [f"Measured coverage of {len(names)} lighting and camera changes at {len(rows)} settings: a setting is called "
           f"covered only where the one-sided {_pct(conf)} lower bound on the share of images whose change lies within "
           f"their own certified radius is at least {_pct(std)} (the specification's threshold)."]
    out.append("Covered: " + ("; ".join(_setting(r) for r in covered) if covered else "none") + ".")
    if partly:
        out.append("Partly covered, so NOT covered as a claim (share of images within their radius, lower bound, count): "
                   + "; ".join(_setting(r) for r in partly) + ".")
    out.append("Not covered at any measured severity: " + (", ".join(never) if never else "none") + ".")
    return out


def covered_names(ev: Mapping[str, Any]) -> list[str]:
    """Changes covered at some measured severity (by the standard of :func:`coverage_sentences`)."""
    std = coverage_standard(ev)
    return list(dict.fromkeys(r["name"] for r in ev["claims"]["coverage"] if coverage_word(r, std) == "covered"))


def lighting_sentences(ev: Mapping[str, Any]) -> list[str]:
    """What a lighting certificate covers, from metrics/certify.json's covariance and metrics/evaluate.json's exact
    ellipsoid tests; [] for an isotropic run."""
    lighting = ev["claims"].get("lighting")
    if not lighting:
        return []
    cov, sigma = lighting["covariance"], ev["certify"]["params"]["sigma"]
    words = {"dc": "the constant image of each colour channel", "dc+ramps": "the constant image and the linear ramps "
             "along x and along y of each colour channel"}
    out = [f"Lighting certificate: the smoothing noise is N(0, Sigma) with Sigma = sigma^2 I + tau'^2 sum_k v_k v_k^T, "
           f"sigma = {_f(sigma)}, K = {cov['k']} fixed orthonormal lighting directions v_k ({words.get(cov['directions'], cov['directions'])}; "
           f"they do not depend on the image), tau = {_f(cov['tau'])} root-mean-square per-pixel standard deviation per "
           f"direction (tau' = tau sqrt(D) = {_f(cov['tau_norm'])}, D = {cov['d']}). A certificate of Mahalanobis radius R "
           f"(column mahalanobis_radius of certify.jsonl) covers every additive change delta with delta^T Sigma^-1 delta "
           f"< R^2; this ellipsoid contains the L2 ball of radius sigma R, so the L2 certificate above holds unchanged."]
    extents = lighting.get("covered_extents") or {}
    if extents.get("n_certified"):
        b, g, s = (extents[k] for k in ("brightness_offset", "gain_change", "ramp_strength"))
        out.append(f"Over the {extents['n_certified']} certified images of the variation study the certificate covers, "
                   f"in the median (smallest in brackets): a brightness offset of every pixel up to +-{_f(b['median'])} "
                   f"({_f(b['min'])}), a gain change of one colour channel up to +-{_pct(g['median'])} ({_pct(g['min'])}) "
                   f"of its values, and a linear illumination ramp from -s to +s across the image with s up to "
                   f"{_f(s['median'])} ({_f(s['min'])}), in [0,1] pixel units, each on its own.")
    rows = lighting["coverage"]
    std = coverage_standard(ev)
    labels = {id(r): coverage_word(r, std) for r in rows}
    covered = [r for r in rows if labels[id(r)] == "covered"]
    partly = [r for r in rows if labels[id(r)] == "partly covered"]
    names = list(dict.fromkeys(r["name"] for r in rows))
    never = [n for n in names if all(labels[id(r)] == "not covered" for r in rows if r["name"] == n)]
    out.append(f"Measured with the exact test on each image's actual change (clipped to [0, 1]): a setting is called "
               f"covered by the lighting certificate only where the one-sided {_pct(ev['claims']['coverage_confidence'])} "
               f"lower bound on the share of images whose change lies in their certified ellipsoid is at least {_pct(std)}.")
    out.append("Covered by the lighting certificate: " + ("; ".join(_setting(r) for r in covered) if covered else "none") + ".")
    if partly:
        out.append("Partly covered by the lighting certificate, so NOT covered as a claim: " + "; ".join(_setting(r) for r in partly) + ".")
    out.append("Not covered by the lighting certificate at any measured severity: " + (", ".join(never) if never else "none") + ".")
    contradictions = sum(int(r.get("contradictions") or 0) for r in rows)
    out.append(f"Ellipsoid-certified changed images whose smoothed prediction differed from the certified class: {contradictions}.")
    return out
