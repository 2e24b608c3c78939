"""The default knobs of a certification run, defined once: the CLI's defaults, and (checked by a test) the values
of params.yaml's ``certify`` section. Units: radii in [0,1]-pixel L2."""
from __future__ import annotations

#: Selection samples per example (CERTIFY's n0).
N0 = 100
#: Estimation samples per example (CERTIFY's n); also PREDICT's sample count and decide's n-max.
N = 10_000
#: Per-example failure probability of a certificate.
ALPHA = 0.001
#: Noise seed: an example's noise depends on (seed, example index) only.
SEED = 3
#: Noisy copies per inference call (does not change results).
BATCH_SIZE = 250
#: One-sided confidence of the dataset-level bounds.
CONFIDENCE = 0.95
#: Radii of the certified-accuracy curve.
RADII = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
#: Disagreement samples per example of an incremental certification (``certify --incremental-from``).
INCREMENTAL_N_P = 1000
