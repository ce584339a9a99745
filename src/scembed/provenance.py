"""What a result was made from: data checksums, package versions, devices, config, commit."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata

import anndata as ad

PACKAGES = (
    "snakemake",
    "torch",
    "scanpy",
    "anndata",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "leidenalg",
    "igraph",
    "umap-learn",
    "pynndescent",
    "matplotlib",
    "scvi-tools",
    "lightning",
    "harmonypy",
)


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: str) -> dict:
    """HEAD of the workflow's repository and whether its tracked files were modified."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", repo, *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "-uno")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def collect(config: dict, raw_files: dict, metrics, repo: str) -> dict:
    """Provenance of a whole run; ``raw_files`` maps dataset name -> raw.h5ad."""
    data = {}
    for name, path in raw_files.items():
        raw = ad.read_h5ad(path, backed="r")
        data[name] = {"n_cells": raw.n_obs, "n_genes": raw.n_vars, **dict(raw.uns["provenance"])}
        raw.file.close()
    devices = metrics.groupby(["dataset", "method"])["device"].unique()
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "workflow": git_commit(repo),
        "data": data,
        "packages": package_versions(),
        "platform": platform.platform(),
        "devices": {f"{d}/{m}": sorted(v) for (d, m), v in devices.items()},
        "config": config,
    }
