"""Sparseness (Gini) and complexity (entropy): known values and parity with Quantus."""
import math

import numpy as np
import pytest
import torch

from metrics import complexity, sparseness


def test_known_values():
    uniform = torch.ones(1, 4, 5)
    spike = torch.zeros(1, 4, 5)
    spike[0, 2, 3] = -3.0  # absolute values: the sign does not matter
    half = torch.zeros(1, 4, 5)
    half[0, :2] = 1.0
    maps = torch.cat([uniform, spike, half])
    np.testing.assert_allclose(sparseness(maps).numpy(), [0.0, 19 / 20, 0.5], atol=1e-7)
    np.testing.assert_allclose(complexity(maps).numpy(), [math.log(20), 0.0, math.log(10)], atol=1e-6)
    assert torch.isnan(sparseness(torch.zeros(1, 3, 3))).all() and torch.isnan(complexity(torch.zeros(1, 3, 3))).all()


def test_a_sharper_map_is_sparser_and_simpler():
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blobs = torch.stack([torch.exp(-((xs - 16) ** 2 + (ys - 16) ** 2) / (2 * s**2)) for s in (2.0, 6.0, 12.0)])
    gini, entropy = sparseness(blobs), complexity(blobs)
    assert gini[0] > gini[1] > gini[2] and entropy[0] < entropy[1] < entropy[2]


@pytest.mark.parametrize("name", ["Sparseness", "Complexity"])
def test_matches_quantus(name):
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    maps = rng.random((6, 1, 14, 12)).astype(np.float32) ** 3
    maps[0, 0, :7] = 0  # zeros inside a map
    x = rng.standard_normal((6, 1, 14, 12)).astype(np.float32)
    metric = getattr(quantus, name)(disable_warnings=True, display_progressbar=False)
    theirs = metric(model=None, x_batch=x, y_batch=np.zeros(6, dtype=int), a_batch=maps.copy(), device="cpu")
    ours = (sparseness if name == "Sparseness" else complexity)(torch.from_numpy(maps) * 5)  # scale-free
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=1e-5)
