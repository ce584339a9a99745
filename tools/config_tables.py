"""Write config/README.md's table of the VAE presets from the presets themselves.

    .venv/bin/python tools/config_tables.py          # rewrite the block in config/README.md
    .venv/bin/python tools/config_tables.py --check  # exit 1 when the block is out of date

The values come from ``scembed.presets.PRESETS`` (the one home of the VAE's values);
this file holds only how the table is laid out: which parameters share a row, and what
each means. The table sits between ``<!-- presets -->`` and ``<!-- /presets -->``;
tests/test_vae_params.py fails when the README's block differs from what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from scembed.presets import CHOICES, PRESETS

README = Path(__file__).resolve().parents[1] / "config" / "README.md"
START, END = "<!-- presets -->", "<!-- /presets -->"

ROWS: list[tuple[tuple[str, ...], str]] = [
    (("likelihood",), ", ".join(f"`{value}`" for value in CHOICES["likelihood"])),
    (("n_latent", "n_hidden", "n_layers"), ""),
    (("batch_size", "lr", "max_epochs", "patience"), ""),
    (
        ("encoder_input",),
        "the encoder sees raw counts (`counts`) or `log1p` of the counts",
    ),
    (
        ("posterior_scale",),
        "the chapter uses softplus(head) directly as the standard deviation; `exp_logvar` "
        "reads it as a log-variance (both get +1e-4, so a collapsed scale cannot give "
        "log 0 in the KL)",
    ),
    (
        ("size_factor",),
        "`book`: row sum x column sum rescaled to the mean count; `library`: row sum over "
        "its mean; `observed`: the cell's total count (scVI's library)",
    ),
    (
        ("decoder_output",),
        "`softplus`: a free positive rate per gene; `softmax`: each gene's fraction of the "
        "cell's counts, times the `observed` library",
    ),
    (("dropout",), "dropout after each hidden layer of the encoder, in training only"),
    (
        ("kl_warmup_epochs",),
        "the KL weight rises linearly from 0 to 1 over these epochs; the best epoch and "
        "early stopping count only later epochs (must be below `max_epochs`)",
    ),
    (("weight_decay", "adam_eps"), "Adam's L2 decay and epsilon (scVI's values in `improved`)"),
    (("drop_last",), "the last partial minibatch of each epoch is dropped"),
    (
        ("device",),
        "CUDA when available (with several GPUs, one that no other training job holds), "
        "else CPU; `cpu`, `cuda`, `cuda:N` force one",
    ),
    (
        ("use_batch",),
        "on a dataset with a `batch_key`: the batch as a one-hot covariate of the "
        "encoder's input and of the decoder's input (beside z), as scVI does (scVI also "
        "feeds it to each later decoder layer); `model.pt` names the batches. Without a "
        "`batch_key`, or false, the network and every number are those without a batch",
    ),
]
"""The table's rows: the parameters each shows (in order) and what they mean."""


def format_value(value) -> str:
    """A preset's value as the config writes it: `code` for names, 1e-3 for small floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 0.01:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{float(mantissa):g}e{int(exponent)}"
        return f"{value:g}"
    return str(value)


def presets_table() -> str:
    """The Markdown table of every preset's values, one row per entry of :data:`ROWS`."""
    shown = [key for keys, _ in ROWS for key in keys]
    parameters = list(PRESETS["book"])
    if sorted(shown) != sorted(parameters):
        missing = sorted(set(parameters) - set(shown))
        extra = sorted(set(shown) - set(parameters)) or sorted(
            {key for key in shown if shown.count(key) > 1}
        )
        raise ValueError(
            f"tools/config_tables.py ROWS must show each VAE parameter once: missing "
            f"{missing}, unknown or repeated {extra}; add or remove them in ROWS."
        )
    lines = [
        "| parameter | " + " | ".join(PRESETS) + " | meaning |",
        "|---|" + "---|" * len(PRESETS) + "---|",
    ]
    for keys, meaning in ROWS:
        cells = [", ".join(f"`{key}`" for key in keys)]
        for preset in PRESETS.values():
            cells.append(", ".join(format_value(preset[key]) for key in keys))
        lines.append(("| " + " | ".join([*cells, meaning]) + " |").replace("|  |", "| |"))
    return "\n".join(lines)


def with_table(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), flags=re.S)
    if not pattern.search(text):
        raise ValueError(f"no block {START} ... {END} in config/README.md: add the two markers")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    text = README.read_text()
    updated = with_table(text, presets_table())
    if args.check:
        if updated != text:
            print(f"{README}: the presets table is out of date; run tools/config_tables.py")
            return 1
        return 0
    if updated != text:
        README.write_text(updated)
        print(f"written the presets table to {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
