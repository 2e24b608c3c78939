"""Lesion image data: the procedural generator (:mod:`.synthetic`), real-data loaders (:mod:`.real`),
byte-stable split files (:mod:`.npz_io`) and the datasheet (:mod:`.datasheet`).

Every split is stored as ``images`` uint8 (N,H,W,3), ``labels`` int64 (N,) and metadata arrays of length N;
:mod:`certification.dataset_io` reads them back.
"""
