"""Shared fixtures: run the workflow in a temporary directory with a given config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run this repository's Snakefile with ``workdir`` as working directory."""
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def run_workflow(tmp_path):
    """``run_workflow(config_dict, *snakemake_args)`` -> CompletedProcess, in tmp_path."""

    def run(config: dict, *args: str, timeout: int = 900):
        configfile = write_config(tmp_path / "config.yaml", config)
        return snakemake(tmp_path, "--configfile", str(configfile), *args, timeout=timeout)

    return run


def synthetic_config(**overrides) -> dict:
    """The small synthetic config of config/test.yaml, with top-level keys replaced."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config.update(overrides)
    return config
