"""Helpers shared by the core tests (importable: pytest.ini puts test/ on sys.path)."""
from __future__ import annotations

from utptrack_ros.models import create_model


def small_o(name: str = "o256", **overrides):
    """The O-family network at reduced width (same layers, token layout and pruning schedule)."""
    return create_model(name, embed_dim=96, num_heads=3, head_channels=(32, 16, 16, 8), **overrides).eval()
