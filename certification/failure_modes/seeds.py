"""Independent, reproducible seeds for each phase of the evaluation (screening, confirmation, attack noise)."""
from __future__ import annotations

import numpy as np

PHASES = {"corruptions": 1, "attack_noise": 2, "attack_screen": 3, "attack_confirm": 4, "quantization": 5, "deployed": 6}


def phase_seed(seed: int, phase: str) -> int:
    """A 31-bit seed derived from (seed, phase) by NumPy's SeedSequence; distinct phases give unrelated streams."""
    return int(np.random.SeedSequence([int(seed), PHASES[phase]]).generate_state(1, dtype=np.uint32)[0] >> 1)
