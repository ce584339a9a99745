"""Run a workflow rule script's ``main`` in the test process with a fake ``snakemake``
object: how tests/test_tl_*.py compare the notebook API with the jobs."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from conftest import rule_script

from scembed.runtime import write_h5ad

SHORT = {"n_hidden": 32, "max_epochs": 3, "kl_warmup_epochs": 1, "device": "cpu"}
CLUSTER = {"n_neighbors": 10}
RUN_KEYS = ("dataset", "method", "kind", "device", "n_genes")


class Wildcards(SimpleNamespace):
    """Snakemake's wildcards: named, and a sequence (``*wildcards[:2]``)."""

    def __getitem__(self, index):
        return [self.dataset, self.method, self.seed][index]


def run_script(name, monkeypatch, tmp_path, inputs, outputs, **params):
    """Run workflow/scripts/<name>.py's main with a fake snakemake object (one thread,
    dataset "pbmc", method "m", seed 0); its outputs are files in tmp_path."""
    script = rule_script(name)
    monkeypatch.setattr(script, "setup_logging", lambda path: logging.getLogger("test_api"))
    if hasattr(script, "stop_on_signals"):
        monkeypatch.setattr(script, "stop_on_signals", lambda *args: None)
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {key: str(tmp_path / filename) for key, filename in outputs.items()}
    snakemake = SimpleNamespace(
        input=[str(path) for path in inputs],
        output=SimpleNamespace(**files) if len(files) > 1 else list(files.values()),
        log=[str(tmp_path / f"{name}.log")],
        threads=1,
        wildcards=Wildcards(dataset="pbmc", method="m", seed="0"),
        params=SimpleNamespace(threads=1, **params),
        config={"checkpoint_every": 1},
    )
    script.main(snakemake)
    return files


def written(adata, tmp_path, name):
    path = tmp_path / f"{name}.h5ad"
    write_h5ad(adata, path)
    return path
