"""Replay tests: shared helpers live in replay_helpers.py next to this file."""
from __future__ import annotations

import sys
from pathlib import Path

# pytest runs with --import-mode=importlib: make the helpers next to this file importable
sys.path.insert(0, str(Path(__file__).resolve().parent))
