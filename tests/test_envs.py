"""Conda environments: one per tool stack, pinned to the versions CI installs with pip, each
installing the scembed library from the workflow's clone (its pip section)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake, write_config
from packaging.requirements import Requirement

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
# conda packages that are tools of the env, not libraries CI installs (pinned all the same)
CONDA_ONLY = {"pip"}
# The env's pip section: the library from the clone that SCEMBED_SOURCE names. Snakemake
# copies the env file into its conda prefix (.snakemake/conda/<hash>.yaml) before conda
# reads it, so a path relative to workflow/envs would name the wrong folder; pip expands
# ${NAME} in the requirements file that conda writes. Editable: the env, built once per
# content hash, runs the clone's current code rather than a copy from the day it was built.
PIP_SECTION = ["-e ${SCEMBED_SOURCE}"]


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
        if isinstance(dep, dict) and list(dep) == ["pip"]:
            continue  # checked by pip_section_problems
        if not isinstance(dep, str):
            problems.append(f"{dep!r} is neither a conda package nor the pip section")
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
        if name in CONDA_ONLY:
            continue
        pip_name = normalize(PIP_NAMES.get(name, name))
        if pip_name not in pins:
            problems.append(f"{name} is not in requirements.txt (as {pip_name})")
        elif pins[pip_name] != version:
            problems.append(f"{name}={version}, but requirements.txt has {pins[pip_name]}")
    return problems


def pip_section_problems(env_file: Path) -> list[str]:
    """Why this env file does not install the library with pip (empty: it does)."""
    deps = yaml.safe_load(env_file.read_text()).get("dependencies", [])
    sections = [dep["pip"] for dep in deps if isinstance(dep, dict) and "pip" in dep]
    problems = []
    if sections != [PIP_SECTION]:
        problems.append(f"pip sections {sections}, expected one: {PIP_SECTION}")
    if not any(isinstance(dep, str) and re.match(r"pip\s*=", dep) for dep in deps):
        problems.append("pip itself is not among the conda packages")
    return problems


def conda_pins(env_file: Path) -> dict[str, str]:
    """{PyPI name: version} of the env's conda packages."""
    pins = {}
    for dep in yaml.safe_load(env_file.read_text())["dependencies"]:
        if isinstance(dep, str) and (match := PIN.match(dep.strip())):
            name, version = match.groups()
            pins[normalize(PIP_NAMES.get(name, name))] = version
    return pins


def library_requirements() -> list[Requirement]:
    """The dependencies pyproject.toml declares for the scembed library (no extras)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "scembed"
    return [Requirement(line) for line in project["dependencies"]]


def library_dependency_problems(env_file: Path) -> list[str]:
    """Why pip would install more than the library into this env (empty: it would not):
    each dependency of the library the env lacks, or pins outside the library's range."""
    pins = conda_pins(env_file)
    problems = []
    for requirement in library_requirements():
        name = normalize(requirement.name)
        if name not in pins:
            problems.append(f"{env_file.name} lacks {requirement.name} (the library needs it)")
        elif not requirement.specifier.contains(pins[name]):
            problems.append(
                f"{env_file.name}: {name}={pins[name]}, but the library needs {requirement}"
            )
    return problems


def pip_install_plan(
    requirements: list[str], folder: Path, source: Path
) -> subprocess.CompletedProcess:
    """What pip would install for ``requirements`` as conda runs it for an env file in
    ``folder`` (a requirements file there, pip started there), with SCEMBED_SOURCE=source.
    Offline and installs nothing: --dry-run, --no-index, --no-deps, no build isolation."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "condaenv.requirements.txt").write_text("\n".join(requirements) + "\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--report",
        "report.json",
        "-r",
        "condaenv.requirements.txt",
    ]
    env = {**os.environ, "SCEMBED_SOURCE": str(source), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)


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


@pytest.mark.parametrize("env_file", ENVS, ids=[p.name for p in ENVS])
def test_env_installs_the_library_with_pip(env_file):
    assert pip_section_problems(env_file) == []


@pytest.mark.parametrize("env_file", ENVS, ids=[p.name for p in ENVS])
def test_env_holds_every_dependency_of_the_library(env_file):
    """pip then installs the library alone: nothing unpinned from PyPI into the env."""
    assert library_dependency_problems(env_file) == []


def test_the_pip_section_names_this_clone(tmp_path):
    """Where Snakemake puts the env file (<workdir>/.snakemake/conda/), pip resolves the
    section to this repository: a project named scembed, installed editable."""
    folder = tmp_path / "workdir" / ".snakemake" / "conda"
    result = pip_install_plan(PIP_SECTION, folder, REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    (install,) = json.loads((folder / "report.json").read_text())["install"]
    assert install["metadata"]["name"] == "scembed"
    assert install["download_info"]["url"] == REPO.as_uri()
    assert install["download_info"]["dir_info"] == {"editable": True}


def test_a_path_relative_to_the_env_file_would_miss_the_clone(tmp_path):
    """Why the section names ${SCEMBED_SOURCE}: `-e ../..` (the clone, seen from
    workflow/envs) is read from the copy under the working directory's .snakemake/conda,
    where it names the working directory, e.g. .test, which holds no project."""
    folder = tmp_path / ".test" / ".snakemake" / "conda"
    result = pip_install_plan(["-e ../.."], folder, REPO)
    assert result.returncode != 0
    assert str(tmp_path / ".test") in result.stdout + result.stderr


def test_missing_pip_section_is_caught(tmp_path):
    source = REPO / "workflow" / "envs" / "scanpy.yaml"
    env = yaml.safe_load(source.read_text())
    env["dependencies"] = [d for d in env["dependencies"] if not isinstance(d, dict)]
    stripped = tmp_path / "stripped.yaml"
    stripped.write_text(yaml.safe_dump(env))
    assert len(pip_section_problems(stripped)) == 1


def test_a_missing_dependency_of_the_library_is_caught(tmp_path):
    source = REPO / "workflow" / "envs" / "scanpy.yaml"
    assert library_dependency_problems(source) == []
    env = yaml.safe_load(source.read_text())

    def named(dep, name: str) -> bool:
        return isinstance(dep, str) and (match := PIN.match(dep.strip())) and match[1] == name

    without = [dep for dep in env["dependencies"] if not named(dep, "numba")]
    assert len(without) == len(env["dependencies"]) - 1
    stripped = tmp_path / "stripped.yaml"
    stripped.write_text(yaml.safe_dump({**env, "dependencies": without}))
    assert library_dependency_problems(stripped) == [
        "stripped.yaml lacks numba (the library needs it)"
    ]


FAKE_CONDA = """#!{python}
# conda as far as Snakemake's env creation goes, offline: it answers Snakemake's checks, and
# `env create` does conda's pip step for the env file's pip section: a requirements file
# beside the env file, pip started there (here with --dry-run, reporting to the prefix).
import json, os, subprocess, sys
from pathlib import Path

import yaml

args = sys.argv[1:]
if args[:2] == ["info", "--json"]:
    print(json.dumps({{"conda_prefix": {prefix!r}, "platform": "linux-64"}}))
elif args == ["--version"]:
    print("conda 24.7.1")
elif args[:2] == ["config", "--get"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}}}))
elif args[:2] == ["env", "create"]:
    env_file = Path(args[args.index("--file") + 1]).resolve()
    prefix = Path(args[args.index("--prefix") + 1])
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    (pip,) = [dep["pip"] for dep in deps if isinstance(dep, dict)]
    requirements = env_file.parent / "condaenv.requirements.txt"
    requirements.write_text("\\n".join(pip) + "\\n")
    prefix.mkdir(parents=True)
    (prefix / "env_file").write_text(str(env_file))
    sys.exit(subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
         "--no-build-isolation", "--quiet", "--report", str(prefix / "pip-report.json"),
         "-r", str(requirements)],
        cwd=env_file.parent,
    ).returncode)
elif args[:1] != ["clean"]:
    sys.exit(f"fake conda: {{args}}")
"""


@pytest.mark.workflow
def test_snakemake_builds_the_envs_with_the_library_of_this_clone(tmp_path):
    """`--sdm conda --conda-create-envs-only` with a stand-in conda (the real one is not
    on the test machines): Snakemake hands conda a copy of each env file under the
    working directory's .snakemake/conda/, and the pip section, read from there with
    SCEMBED_SOURCE, which the workflow sets to its own clone when the user has not,
    installs this clone, editable."""
    fake = tmp_path / "bin" / "conda"
    fake.parent.mkdir()
    fake.write_text(FAKE_CONDA.format(python=sys.executable, prefix=str(tmp_path / "conda")))
    fake.chmod(0o755)
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    config["methods"]["scvi"] = {"kind": "scvi", "max_epochs": 1}  # its env too
    workdir = tmp_path / "work"
    env = {
        **{key: value for key, value in os.environ.items() if key != "SCEMBED_SOURCE"},
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    configfile = write_config(tmp_path / "config.yaml", config)
    args = ["--configfile", str(configfile), "--sdm", "conda", "--conda-create-envs-only"]
    result = snakemake(workdir, *args, "--cores", "1", env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prefixes = sorted(p for p in (workdir / ".snakemake" / "conda").iterdir() if p.is_dir())
    assert len(prefixes) == len(ENVS)
    for prefix in prefixes:
        env_file = Path((prefix / "env_file").read_text())
        assert env_file.parent == (workdir / ".snakemake" / "conda").resolve()
        (install,) = json.loads((prefix / "pip-report.json").read_text())["install"]
        assert install["metadata"]["name"] == "scembed"
        assert install["download_info"] == {"url": REPO.as_uri(), "dir_info": {"editable": True}}
