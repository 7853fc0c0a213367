"""Shared fixtures: small real models (random init) and synthetic frames."""
from __future__ import annotations

import numpy as np
import pytest
import torch



@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
