"""Language descriptions of generated targets: colour / pattern / category / position words that
identify the target among the distractors.

The description always names the category and the colour; it adds the pattern when that separates
the target from a distractor, and a position phrase (first frame) either at random or when the
words alone would not separate it. ``describe`` reports whether the result is discriminative.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .appearance import MULTICOLOURED


@dataclass(frozen=True)
class Described:
    """Words of one object and its first-frame centre (image px)."""

    category: str
    colour: str
    pattern: Optional[str]
    x: float
    y: float


def absolute_position(x: float, y: float, width: int, height: int) -> str:
    col = "left" if x < width / 3 else "right" if x > 2 * width / 3 else ""
    row = "top" if y < height / 3 else "bottom" if y > 2 * height / 3 else ""
    if row and col:
        return f"in the {row} {col}"
    if col:
        return f"on the {col}"
    if row:
        return f"at the {row}"
    return "in the middle"


def relative_position(target: Described, others: Sequence[Described]) -> Optional[str]:
    """"leftmost"-style word when the target is extreme along x or y among all objects."""
    if not others:
        return None
    xs = [o.x for o in others]
    ys = [o.y for o in others]
    margin = 4.0
    options = []
    if target.x < min(xs) - margin:
        options.append("on the left" if len(others) == 1 else "leftmost")
    if target.x > max(xs) + margin:
        options.append("on the right" if len(others) == 1 else "rightmost")
    if target.y < min(ys) - margin:
        options.append("at the top" if len(others) == 1 else "topmost")
    if target.y > max(ys) + margin:
        options.append("at the bottom" if len(others) == 1 else "bottommost")
    return options[0] if options else None


def _separates(target: Described, other: Described, use_pattern: bool) -> bool:
    if target.category != other.category or target.colour != other.colour:
        return True
    return use_pattern and target.pattern != other.pattern


def describe(target: Described, distractors: Sequence[Described], width: int, height: int,
             rng: np.random.Generator) -> tuple[str, dict]:
    """One-line description of ``target`` and a dict of what it used (``discriminative`` etc.)."""
    words_only = all(_separates(target, d, use_pattern=False) for d in distractors)
    optional_pattern = target.pattern not in (None, "textured") and rng.random() < 0.35
    use_pattern = target.pattern is not None and (not words_only or optional_pattern)
    separated = all(_separates(target, d, use_pattern) for d in distractors)
    position = None
    relative = None
    if not separated:
        relative = relative_position(target, distractors)
        position = relative
    elif rng.random() < 0.45:
        position = absolute_position(target.x, target.y, width, height)
    colour = target.colour if target.colour != MULTICOLOURED else "colorful"
    noun = " ".join(w for w in (colour, target.pattern if use_pattern else None, target.category) if w)
    if position in ("leftmost", "rightmost", "topmost", "bottommost"):
        text = f"the {position} {noun}"
    else:
        template = int(rng.integers(4))
        tail = f" {position}" if position else ""
        article = "an" if noun[0] in "aeiou" else "a"
        text = (f"the {noun}{tail}", f"{article} {noun}{tail}", f"{noun}{tail}", f"track the {noun}{tail}")[template]
    info = {"colour": colour, "category": target.category, "pattern": target.pattern if use_pattern else None,
            "position": position, "discriminative": separated or relative is not None}
    return text, info
