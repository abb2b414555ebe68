"""Mean ± sample std over folds, and a run repeated over seeds summarised as the promotion rule reads it."""

from __future__ import annotations

from collections.abc import Iterable

from .names import METRICS


def aggregate(per_fold: Iterable[dict[str, float]]) -> dict[str, float | int | None] | None:
    """Mean and sample standard deviation (ddof=1) of each metric over folds.

    ``std_*`` is ``None`` for a single fold: one value has no sample spread.
    """
    import numpy as np

    folds = list(per_fold)
    if not folds:
        return None
    # The script's six keys first, then KRCC and the logistic metrics where every fold has them.
    extras = [k for k in ("krcc", "plcc_logistic", "rmse_logistic") if all(m.get(k) is not None for m in folds)]
    result: dict[str, float | int | None] = {}
    for names in (METRICS, extras):
        for name in names:
            result[f"mean_{name}"] = float(np.mean([m[name] for m in folds]))
        for name in names:
            result[f"std_{name}"] = float(np.std([m[name] for m in folds], ddof=1)) if len(folds) > 1 else None
    result["n_folds"] = len(folds)
    return result


def _mean(block: dict[str, float | int | None], name: str) -> float:
    """``block``'s ``mean_<name>``: a number, as :func:`aggregate` gives every mean (only a std may be ``None``)."""
    value = block[f"mean_{name}"]
    assert value is not None  # aggregate() sets each mean_* to float(np.mean(...)), never None
    return value


def across_seeds(per_seed: dict[int, dict[str, dict]]) -> dict:
    """A run repeated over seeds: ``{seed: {source: fold metrics}}`` -> the promotion figures.

    Per seed the mean over its folds (as :func:`aggregate`); across seeds the mean of the
    per-seed means, their sample std (ddof=1), their spread max - min and the lowest seed
    (as the team's ``ensemble_prod_gate.py`` does on PLCC); and for each fold its mean and
    std across seeds.
    """
    import numpy as np

    seeds = sorted(per_seed)
    means: dict[int, dict[str, float | int | None]] = {}
    for seed in seeds:
        block = aggregate(per_seed[seed].values())
        if block is None:
            raise ValueError(f"seed {seed} has no fold: a seed is summarised over the folds it scored")
        means[seed] = block
    summary: dict = {"seeds": seeds, "n_seeds": len(seeds), "per_seed": means}
    for name in METRICS:
        values = np.array([means[seed][f"mean_{name}"] for seed in seeds])
        summary[f"mean_{name}"] = float(np.mean(values))
        summary[f"std_{name}"] = float(np.std(values, ddof=1)) if len(seeds) > 1 else None
        summary[f"spread_{name}"] = float(values.max() - values.min())
    lowest = min(seeds, key=lambda seed: _mean(means[seed], "plcc"))
    summary["lowest_seed"] = lowest
    summary["lowest_seed_mean_plcc"] = means[lowest]["mean_plcc"]
    sources = sorted({source for seed in seeds for source in per_seed[seed]})
    summary["per_fold"] = {}
    for source in sources:
        across = aggregate(per_seed[seed][source] for seed in seeds if source in per_seed[seed])
        assert across is not None
        across["n_seeds"] = across.pop("n_folds")
        summary["per_fold"][source] = across
    return summary
