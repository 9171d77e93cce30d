"""The runtime's preprocessing is the export check's: ``Model.preprocess`` is ``load_inputs``'s."""

from __future__ import annotations

import numpy as np

from scconv_deploy.calibration import load_inputs


def test_normalize_matches_the_export_preprocessing(model, digits_test, tmp_path):
    raw, _ = digits_test
    path = tmp_path / "digits_test.npy"
    np.save(path, raw)
    n = 64
    exported, _ = load_inputs(path, (1, 1, 32, 32), model.metadata["mean"], model.metadata["std"], limit=n)
    np.testing.assert_array_equal(model.preprocess(raw[:n]), exported)
