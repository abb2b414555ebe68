"""Feature names: the one place that says which libvmaf feature a column or cache entry is.

Features are always matched by name, never by position: a cache written by another tool
may list them in another order, a table has them as columns, and a model's sidecar names
the order it was trained on. libvmaf's integer extractors call ``adm2`` ``integer_adm2``;
both spellings are the same feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np

# The first generation's input, in the order the team's models were trained on.
FEATURE_NAMES = ("adm2", "vif_scale0", "vif_scale1", "vif_scale2", "vif_scale3", "motion2")

_LIBVMAF_PREFIX = "integer_"


def canonical(name: str) -> str:
    """``integer_adm2`` -> ``adm2``; any other name is returned as it is."""
    return name[len(_LIBVMAF_PREFIX):] if name.startswith(_LIBVMAF_PREFIX) else name


def columns_for(available: Sequence[str], wanted: Sequence[str], *, path: Path | str, fix: str) -> list[int]:
    """Indices into ``available`` of each of ``wanted``, matched by canonical name.

    Raises :class:`LosoInputError` naming every missing feature (and what is there), or a
    wanted feature held twice (``adm2`` and ``integer_adm2``): which one to feed is not clear.
    """
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(available):
        positions.setdefault(canonical(name), []).append(i)
    missing = [name for name in wanted if canonical(name) not in positions]
    twice = [" and ".join(available[i] for i in positions[canonical(name)])
             for name in wanted if len(positions.get(canonical(name), ())) > 1]
    problems = []
    if missing:
        problems.append(f"missing feature{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(has: {', '.join(available) or 'none'})")
    if twice:  # which one the model takes would be a guess
        problems.append(f"the same feature is held more than once: {'; '.join(twice)}")
        fix = "keep one spelling of each feature (bare or libvmaf's integer_ name), not both"
    if problems:
        raise LosoInputError(path, "; ".join(problems), fix)
    return [positions[canonical(name)][0] for name in wanted]


def select(features: np.ndarray, available: Sequence[str], wanted: Sequence[str], *, path: Path | str,
           fix: str) -> np.ndarray:
    """The columns of ``features`` named ``wanted``, in that order (a view when already in order)."""
    cols = columns_for(available, wanted, path=path, fix=fix)
    if cols == list(range(features.shape[1])):
        return features
    return features[:, cols]
