"""Write kang_pbmc with a `donor` column, for the batch grid (experiments/batches.yaml).

The file in ../shared/data names each cell's sample (`sample_id`: donor x condition,
e.g. `ctrl101`); the batch to remove is the donor (the last three characters), not the
condition, which is the biology. Written to results/data/ (git-ignored), never into
the repository:

    .venv/bin/python experiments/kang_donor.py
"""

import sys
from pathlib import Path

import anndata as ad

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "kang_pbmc.h5ad"
TARGET = ROOT / "results" / "data" / "kang_pbmc_donor.h5ad"


def main() -> int:
    if not SOURCE.exists():
        raise SystemExit(f"{SOURCE} is missing: the batch grid needs ../shared/data")
    adata = ad.read_h5ad(SOURCE)
    adata.obs["donor"] = adata.obs["sample_id"].astype(str).str[-3:].astype("category")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(TARGET)
    print(f"written {TARGET}: donors {dict(adata.obs['donor'].value_counts())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
