"""The registry of method kinds (scembed.methods): the schema, the rules and the env files
agree with it, and the modules the workflow reads while it plans import no torch."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO

from scembed.methods import KINDS, method_kind, method_value
from scembed.presets import PRESETS
from scembed.schema import load_schema

RULES = REPO / "workflow" / "rules"


def rule_block(rule: str) -> str:
    """The text of ``rule`` in workflow/rules/*.smk (fails when no file defines it)."""
    for smk in sorted(RULES.glob("*.smk")):
        block = re.search(rf"^rule {rule}:\n((?:[ \t]+.*\n|\n)+)", smk.read_text(), re.M)
        if block:
            return block.group(1)
    raise AssertionError(f"no rule {rule} in {RULES}")


def test_the_schemas_kinds_are_the_registrys():
    schema = load_schema()
    method = schema["$defs"]["method"]
    assert set(method["properties"]["kind"]["enum"]) == set(KINDS)
    branches = {
        branch["if"]["properties"]["kind"]["const"]: branch["then"]["$ref"]
        for branch in method["allOf"]
    }
    assert branches == {kind: f"#/$defs/{kind}" for kind in KINDS}
    for kind in KINDS:
        assert schema["$defs"][kind]["properties"]["kind"] == {"const": kind}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kinds_rule_and_env_exist(kind):
    entry = KINDS[kind]
    block = rule_block(entry.rule)
    assert (REPO / "workflow" / "envs" / entry.env).is_file(), entry.env
    assert re.search(rf'^\s+conda:\n\s+"\.\./envs/{re.escape(entry.env)}"', block, re.M)
    # the rule writes the runs of exactly this kind's methods
    assert f'method=names_regex(PLAN.methods_of_rule("{entry.rule}"))' in block
    assert "embedding.h5ad" in block
    assert ("history=" in block) is entry.writes_history
    # a training job's threads and gpu unit are scheduled as the profiles say
    assert ("gpu=gpu_request" in block) is entry.trains
    assert ("threads: train_threads" in block) is entry.trains


@pytest.mark.parametrize("kind", list(KINDS))
def test_where_a_kinds_defaults_live(kind):
    """A kind's values come from the schema's defaults, or (VAE) from its preset: then
    the schema gives none but the preset's own name."""
    properties = load_schema()["$defs"][kind]["properties"]
    defaults = {key for key, spec in properties.items() if "default" in spec}
    if KINDS[kind].preset_params is not None:
        assert defaults == {"preset"}
    else:
        assert "use_batch" in defaults  # scembed.methods.method_value reads it


@pytest.mark.parametrize("kind", [kind for kind, entry in KINDS.items() if entry.preset_params])
def test_a_kinds_preset_params_give_every_key_of_its_schema(kind):
    keys = set(load_schema()["$defs"][kind]["properties"]) - {"kind", "preset"}
    values = KINDS[kind].preset_params({"kind": kind})
    assert [key for key in sorted(keys) if not hasattr(values, key)] == []


def test_a_methods_value_is_its_own_else_its_presets_else_the_schemas():
    assert method_value({"kind": "vae", "device": "cpu"}, "device") == "cpu"
    improved = {"kind": "vae", "preset": "improved"}
    assert method_value(improved, "batch_size") == PRESETS["improved"]["batch_size"]
    scvi = load_schema()["$defs"]["scvi"]["properties"]
    assert method_value({"kind": "scvi"}, "device") == scvi["device"]["default"]
    assert method_value({"kind": "scvi", "device": "cuda"}, "device") == "cuda"


def test_an_unknown_kind_names_the_known_ones():
    assert method_kind({"kind": "scvi"}).rule == "train_scvi"
    with pytest.raises(ValueError, match="kind 'umap' is unknown; set `kind` to one of pca, vae"):
        method_kind({"kind": "umap"})


@pytest.mark.parametrize(
    "module", ["scembed.methods", "scembed.presets", "scembed.plan", "scembed.batches"]
)
def test_planning_imports_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
