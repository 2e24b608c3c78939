"""The robustness dossier: evidence collection, templates, figures and the deterministic unsigned PDF.

Import submodules directly (``certification.dossier.build``); this package imports nothing heavy itself.
"""
