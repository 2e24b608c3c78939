"""Failure-mode evaluation of a certified smoothed classifier: where it fails and what the certificate omits.

One module per analysis, each with a results dataclass and its JSON part documented in its docstring:

* :mod:`~certification.failure_modes.subgroups`: certified accuracy per class / Fitzpatrick type / metadata
  tercile with bounds, flagged against the gate threshold (key ``subgroups``);
* :mod:`~certification.failure_modes.abstentions`: abstention rates with bounds, least robust correct examples
  as images (keys ``abstentions``, ``least_robust``);
* :mod:`~certification.failure_modes.corruptions` (variations in
  :mod:`~certification.failure_modes.camera_variations`): lighting and camera variations, accuracy and L2 size
  beside the certified radius (keys ``corruptions``, ``corruptions_clean``);
* :mod:`~certification.failure_modes.attacks` (PGD in :mod:`~certification.failure_modes.pgd`): empirical
  attacks and confirmed contradictions of certificates (key ``attack``);
* :mod:`~certification.failure_modes.quantization_drift`: fp32 vs int8 (key ``quantization``).

:func:`certification.failure_modes.report.evaluate_failure_modes` runs them all. All radii and L2 sizes are in
[0,1]-pixel units. Everything is seeded; the only varying output is the ``seconds`` entry.
"""
