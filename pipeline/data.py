"""Stage ``data``: build data/{train,val,test}.npz and data/datasheet.json from params ``data``.

``data.source``: ``synthetic`` (procedural lesions; sizes n_train/n_val/n_test, seed), ``npz`` (a
DermaMNIST-format file at ``data.path``) or ``folder`` (images + labels.csv at ``data.path``). Everything is
built and validated in memory before the first file is written, so bad input leaves no outputs.
"""
from __future__ import annotations

import time

from certification.data.datasheet import build_datasheet, split_summary
from certification.data.npz_io import save_split
from certification.data.real import SPLITS
from certification.data.sources import build_dataset, provenance
from certification.dataset_io import METADATA_FIELDS
from certification.fileio import sha256_file, write_json_atomic
from pipeline import layout
from pipeline.stage import load_section, run_stage

KEYS = {"source": str, "path": str, "image_size": int, "n_train": int, "n_val": int, "n_test": int, "seed": int,
        "classes": list, "malignant_classes": list}
OUT_DIR = layout.DATA_DIR


def build(params: dict) -> tuple[dict, dict]:
    """Splits and datasheet fields (without hashes) for the ``data`` params; raises InputError on bad input."""
    dataset = build_dataset(params["source"], params["path"], params["image_size"],
                            {split: params[f"n_{split}"] for split in SPLITS}, params["seed"], params["classes"],
                            params["malignant_classes"])
    return dataset.splits, provenance(dataset)


def main() -> int:
    params = load_section("data", KEYS)
    started = time.perf_counter()
    splits, info = build(params)
    summaries = {}
    for split in SPLITS:
        images, labels, metadata = splits[split]
        path = {"train": layout.TRAIN_SPLIT, "val": layout.VAL_SPLIT, "test": layout.TEST_SPLIT}[split]
        save_split(path, images, labels, metadata)
        summaries[split] = split_summary(labels, metadata, info["classes"], sha256_file(path))
    fields = [f for f in METADATA_FIELDS if all(f in splits[s][2] for s in SPLITS)]
    datasheet = build_datasheet(params["source"], info["generator_version"], info["seed"], params["image_size"],
                                info["classes"], info["malignant"], summaries, fields)
    write_json_atomic(layout.DATASHEET, datasheet)
    seconds = time.perf_counter() - started
    counts = ", ".join(f"{s} {summaries[s]['n']}" for s in SPLITS)
    print(f"data: {counts} images of {params['image_size']}px "
          f"({params['source']}) in {seconds:.1f} s")
    from pipeline.tracking import log_stage

    log_stage("data", params, {"seconds": seconds, **{f"n_{s}": summaries[s]["n"] for s in SPLITS}},
              artifacts=[layout.DATASHEET])
    return 0


if __name__ == "__main__":
    run_stage("data", main)
