"""The VAE's parameters (scembed.presets, given to the model as scembed.vae.params): the
presets, overrides, the values refused, the schema's choices that are the code's, and
config/README.md's table of the presets."""

import dataclasses

import config_tables
import pytest

from scembed import presets
from scembed.schema import load_schema
from scembed.vae.params import BOOK, PRESETS, VAEParams, resolve_params

# --- presets -----------------------------------------------------------------------------


def test_presets_and_overrides():
    assert resolve_params({}) == VAEParams(**BOOK)
    assert PRESETS["book"] == dataclasses.asdict(resolve_params({"preset": "book"}))
    stable = resolve_params({"preset": "stable", "lr": 5e-4})
    assert stable.encoder_input == "log1p" and stable.posterior_scale == "exp_logvar"
    assert stable.lr == 5e-4 and stable.likelihood == "zinb" and stable.batch_size == 100
    book = resolve_params({"preset": "book", "likelihood": "nb", "encoder_input": "log1p"})
    assert book.likelihood == "nb" and book.encoder_input == "log1p"
    assert book.posterior_scale == "softplus"


def test_book_preset_leaves_every_lever_off():
    book = resolve_params({})
    assert (book.decoder_output, book.dropout, book.kl_warmup_epochs) == ("softplus", 0.0, 0)
    assert (book.weight_decay, book.adam_eps, book.size_factor) == (0.0, 1e-8, "book")


def test_improved_preset_resolves_and_takes_overrides():
    improved = resolve_params({"preset": "improved"})
    assert dataclasses.asdict(improved) == PRESETS["improved"]
    changed = {k for k in BOOK if PRESETS["improved"][k] != BOOK[k]}
    assert {"encoder_input", "posterior_scale", "decoder_output", "size_factor"} <= changed
    assert improved.decoder_output == "softmax" and improved.size_factor == "observed"
    override = resolve_params({"preset": "improved", "likelihood": "zinb", "dropout": 0.2})
    assert override.likelihood == "zinb" and override.dropout == 0.2
    assert override.decoder_output == "softmax"  # the rest of the preset stays


def test_use_batch_is_the_presets_and_overridable():
    """Only the improved preset conditions on the batch by default: the book's and the
    stable VAE stay what they were on a dataset with a batch_key."""
    assert [resolve_params({"preset": name}).use_batch for name in PRESETS] == [
        False,
        False,
        True,
    ]
    assert list(PRESETS) == ["book", "stable", "improved"]
    assert resolve_params({"preset": "improved", "use_batch": False}).use_batch is False
    assert resolve_params({"preset": "book", "use_batch": True}).use_batch is True


# --- refused values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_latnt": 5}, "n_latnt.*allowed"),
        ({"preset": "fast"}, "fast.*book"),
        ({"likelihood": "gaussian"}, "gaussian.*zinb"),
        ({"size_factor": "dense"}, "dense.*library"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 2.5}, "max_epochs"),
        ({"lr": -1}, "lr"),
        ({"device": "gpu"}, "gpu.*cuda"),
        ({"drop_last": "yes"}, "drop_last"),
        ({"use_batch": "yes"}, "use_batch.*true or false"),
        ({"use_batch": 1}, "use_batch"),
    ],
)
def test_bad_params_raise(params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"weight_decay": -1e-6}, "weight_decay"),
        ({"adam_eps": 0}, "adam_eps"),
        ({"kl_warmup_epochs": -1}, "kl_warmup_epochs"),
        ({"kl_warmup_epochs": 1.5}, "kl_warmup_epochs"),
        ({"kl_warmup_epochs": 500}, "below max_epochs"),
        ({"decoder_output": "relu"}, "relu.*softmax"),
        ({"size_factor": "total"}, "total.*observed"),
    ],
)
def test_bad_lever_values_raise(params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(params)


# --- the schema --------------------------------------------------------------------------


def test_the_model_gets_the_plain_presets():
    from scembed.vae import params

    assert params.PRESETS is presets.PRESETS and params.resolve_params is presets.resolve_params


def test_the_plain_choices_are_the_models_code():
    """The torch-free lists name exactly what the model implements, in the same order."""
    from scembed.vae.distributions import LIKELIHOODS
    from scembed.vae.module import ENCODER_INPUTS, SIZE_FACTORS
    from scembed.vae.nn import DECODER_OUTPUTS, POSTERIOR_SCALES

    assert {
        "likelihood": list(LIKELIHOODS),
        "encoder_input": list(ENCODER_INPUTS),
        "posterior_scale": list(POSTERIOR_SCALES),
        "size_factor": list(SIZE_FACTORS),
        "decoder_output": list(DECODER_OUTPUTS),
    } == presets.CHOICES


def test_the_readme_table_is_written_from_the_presets():
    """config/README.md's block is what tools/config_tables.py writes (run it to update)."""
    text = config_tables.README.read_text()
    assert config_tables.with_table(text, config_tables.presets_table()) == text
    table = config_tables.presets_table()
    assert "| `likelihood` | `zinb` | `zinb` | `nb` |" in table
    assert "| `weight_decay`, `adam_eps` | 0, 1e-8 | 0, 1e-8 | 1e-6, 0.01 |" in table


def test_the_readme_table_needs_every_parameter_once(monkeypatch):
    monkeypatch.setattr(config_tables, "ROWS", config_tables.ROWS[1:])
    with pytest.raises(ValueError, match=r"missing \['likelihood'\].*add or remove them in ROWS"):
        config_tables.presets_table()
    with pytest.raises(ValueError, match="no block <!-- presets -->"):
        config_tables.with_table("no markers", "table")


def test_schema_enums_are_the_codes_choices():
    """The schema's allowed values are those the code accepts (defined once each)."""

    from scembed.cluster import KNN_SEARCHES
    from scembed.vae.params import CHOICES, PRESETS

    schema = load_schema()
    vae = schema["$defs"]["vae"]["properties"]
    for key, allowed in CHOICES.items():
        assert vae[key]["enum"] == list(allowed), key
    assert vae["preset"]["enum"] == list(PRESETS)
    assert vae["preset"]["default"] == presets.DEFAULT_PRESET
    assert set(vae) - {"kind", "preset"} == set(PRESETS["book"])  # every parameter described
    cluster = schema["$defs"]["cluster"]["properties"]
    assert cluster["knn_search"]["enum"] == list(KNN_SEARCHES)
    assert set(schema["properties"]["cluster"]["properties"]) == set(cluster)
    assert set(schema["properties"]["preprocess"]["properties"]) == set(
        schema["$defs"]["preprocess"]["properties"]
    )
