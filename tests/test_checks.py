"""Checks of the data (scembed.checks): labels kept missing, the split's arithmetic.

The count checks are tested with the readers that call them (test_sources.py), the label
column checks through the import (test_valid_input.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scembed.checks import labelled, normalise_labels, split_sizes
from scembed.preprocess import split_cells


def test_labelled_and_normalise_labels_keep_missing_and_blank_labels_missing():
    labels = pd.Series(["B", np.nan, "  ", "", 7, None, "a"], dtype=object)
    assert labelled(labels).tolist() == [True, False, False, False, True, False, True]
    normalised = normalise_labels(labels)
    assert list(normalised.categories) == ["7", "B", "a"]  # no "nan" or "None" type
    assert pd.isna(normalised).tolist() == [False, True, True, True, False, True, False]


def test_split_sizes_are_those_of_the_split():
    for n, v, t in [(15, 0.1, 0.05), (600, 0.1, 0.05), (11, 0.3, 0.2), (1000, 0.5, 0.5)]:
        split = split_cells(n, v, t, 0)
        assert split_sizes(n, v, t) == {k: int((split == k).sum()) for k in split_sizes(n, v, t)}
