"""Conda environments: one per tool stack, pinned to the versions CI installs with pip."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from scembed.versions import normalize
from scembed.versions import read_pins as requirements

RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
ENVS = sorted((REPO / "workflow" / "envs").glob("*.yaml"))

# conda-forge name -> PyPI name, where they differ
PIP_NAMES = {
    "python-igraph": "igraph",
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*==?\s*([0-9][^\s=<>!,*|]*)$")


def rule_envs() -> dict[str, str | None]:
    """{rule: the path its `conda:` directive names, or None}, for every rule in rules/."""
    envs = {}
    for smk in RULES:
        text = smk.read_text()
        for block in re.split(r"^(?=rule \w+:)", text, flags=re.MULTILINE):
            name = re.match(r"rule (\w+):", block)
            if not name:
                continue
            conda = re.search(r"^\s+conda:\s*\n\s+[\"']([^\"']+)[\"']", block, re.MULTILINE)
            envs[name.group(1)] = conda.group(1) if conda else None
    return envs


def env_problems(env_file: Path, pins: dict[str, str], python: str) -> list[str]:
    """Why this env file is not pinned to the pip requirements (empty: it is)."""
    env = yaml.safe_load(env_file.read_text())
    problems = []
    if env.get("channels") != ["conda-forge", "nodefaults"]:
        problems.append(f"channels {env.get('channels')} != [conda-forge, nodefaults]")
    for dep in env.get("dependencies", []):
        if not isinstance(dep, str):
            problems.append(f"{dep!r}: pip sections are not allowed, use conda packages")
            continue
        match = PIN.match(dep.strip())
        if not match:
            problems.append(f"{dep!r} is not pinned as NAME=VERSION")
            continue
        name, version = match.groups()
        if name == "python":
            if version != python:
                problems.append(f"python={version}, but CI runs Python {python}")
            continue
        pip_name = normalize(PIP_NAMES.get(name, name))
        if pip_name not in pins:
            problems.append(f"{name} is not in requirements.txt (as {pip_name})")
        elif pins[pip_name] != version:
            problems.append(f"{name}={version}, but requirements.txt has {pins[pip_name]}")
    return problems


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_every_rule_has_a_conda_env():
    envs = rule_envs()
    assert len(envs) >= 10, envs  # every rule of rules/*.smk was found
    missing = [rule for rule, path in envs.items() if path is None]
    assert not missing, f"rules without conda: {missing}"
    for rule, path in envs.items():
        # paths in rules/*.smk are relative to rules/
        assert (REPO / "workflow" / "rules" / path).resolve().is_file(), (
            f"{rule}: {path} does not exist"
        )
        assert (
            REPO / "workflow" / "rules" / path
        ).resolve().parent == REPO / "workflow" / "envs", f"{rule}: {path}"


def test_every_env_file_is_used():
    used = {(REPO / "workflow" / "rules" / p).resolve() for p in rule_envs().values() if p}
    assert ENVS and set(ENVS) <= used, sorted(set(ENVS) - used)


@pytest.mark.parametrize("env_file", ENVS, ids=[p.name for p in ENVS])
def test_env_pinned_to_requirements(env_file):
    assert env_problems(env_file, requirements(), PYTHON) == []


def test_drift_is_caught(tmp_path):
    """A copy of an env file with one version changed no longer passes."""
    source = REPO / "workflow" / "envs" / "scanpy.yaml"
    pins = requirements()
    assert env_problems(source, pins, PYTHON) == []
    text = source.read_text()
    drifted = tmp_path / "drifted.yaml"
    old = f"scanpy={pins['scanpy']}"
    assert old in text
    drifted.write_text(text.replace(old, "scanpy=1.10.0"))
    assert env_problems(drifted, pins, PYTHON) == [
        f"scanpy=1.10.0, but requirements.txt has {pins['scanpy']}"
    ]
    # and the other way round: requirements.txt moves on, the env file stays
    moved = tmp_path / "requirements.txt"
    moved.write_text((REPO / "requirements.txt").read_text().replace("numpy==", "numpy==9"))
    assert any("numpy=" in p for p in env_problems(source, requirements(moved), PYTHON))
    # unpinned, wrong channels, wrong Python
    loose = tmp_path / "loose.yaml"
    loose.write_text("channels: [conda-forge, defaults]\ndependencies: [python=3.9, numpy]\n")
    problems = env_problems(loose, pins, "3.11")
    assert len(problems) == 3, problems


def test_conda_name_mapping():
    pins = requirements()
    for conda_name, pip_name in PIP_NAMES.items():
        assert normalize(pip_name) in pins, f"{pip_name} (conda {conda_name}) not in requirements"
