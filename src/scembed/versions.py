"""Installed versions of the packages whose behaviour the results depend on, against the
pins of ``requirements.txt``: a user's own environment is where breakage comes from."""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version

# the clone's pins (src/scembed/versions.py -> the repository); absent in a wheel
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
CHECKED = ("scanpy", "scipy", "anndata", "torch", "numpy", "pynndescent", "scikit-learn")


def normalize(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path = REQUIREMENTS) -> dict[str, str]:
    """{normalised name: version} of every ``name==version`` line of a requirements file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name.split("[")[0])] = version.strip()
    return pins


def _public(version: str) -> str:
    """The version without a local part: torch's "2.13.0+cpu" is "2.13.0"."""
    try:
        return Version(version).public
    except InvalidVersion:
        return version


def version_mismatches(
    packages=CHECKED, requirements: str | Path = REQUIREMENTS, installed=None
) -> list[str]:
    """One message per installed package of ``packages`` whose version is not the pinned
    one (a package that is not installed here is skipped: another rule's env has it).
    ``installed`` maps names to versions in place of the environment's (for tests)."""
    if not Path(requirements).is_file():  # an installed package without the clone's pins
        return []
    pins = read_pins(requirements)
    messages = []
    for name in packages:
        pinned = pins.get(normalize(name))
        if pinned is None:
            continue
        try:
            version = installed[name] if installed is not None else metadata.version(name)
        except (KeyError, metadata.PackageNotFoundError):
            continue
        if _public(version) != _public(pinned):
            messages.append(
                f"{name} {version} is installed but the workflow is tested with {name}=="
                f"{pinned}; results may differ or code paths may break. Install the pinned "
                f"versions (`make venv`, or `pip install -r requirements.txt`) or use "
                "`--software-deployment-method conda`."
            )
    return messages


INSTALL_HINT = (
    "install it with `pip install scvi-tools==1.4.2` (the version pinned in "
    "requirements.txt; `make venv` does it), or run with --use-conda (envs/scvi.yaml)"
)


def scvi_available() -> bool:
    """Whether scvi-tools can be imported here (without importing it: that takes seconds)."""
    try:
        return importlib.util.find_spec("scvi") is not None
    except (ImportError, ValueError):  # a broken or blocked module counts as missing
        return False


def missing_scvi_message(methods: list[str]) -> str:
    """The error of a config naming ``kind: scvi`` where scvi-tools is not installed."""
    return (
        f"the method(s) {methods} have kind `scvi`, but scvi-tools is not installed: "
        f"{INSTALL_HINT}."
    )
