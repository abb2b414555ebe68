"""Computing metrics: PLCC, SROCC and RMSE of predictions against VMAF, and their fold aggregate.

The formulas are the evaluation script's, on the same float32 arrays, so the numbers
agree to the last digit: ``pearsonr(pred, y).statistic``, ``spearmanr(pred, y).statistic``
and ``sqrt(mean((pred - y) ** 2))``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LosoInputError

if TYPE_CHECKING:
    import numpy as np

METRICS = ("plcc", "srocc", "rmse")
LABELS = {"plcc": "PLCC", "srocc": "SROCC", "krcc": "KRCC", "rmse": "RMSE",
          "plcc_logistic": "PLCC (logistic)", "rmse_logistic": "RMSE (logistic)",
          "spread_plcc": "spread of the seeds' mean PLCC"}


def label(metric: str) -> str:
    """``plcc`` -> ``PLCC``, ``mean_rmse`` -> ``mean RMSE``."""
    return "mean " + LABELS[metric[5:]] if metric.startswith("mean_") else LABELS[metric]


def digits(metric: str) -> int:
    """Decimals a metric is shown with: RMSE is on the 0-100 VMAF axis, correlations are not."""
    return 3 if "rmse" in metric else 4


BOOTSTRAP_BATCH_FRAMES = 100_000  # resamples x frames held at once: small enough to stay in cache
PARALLEL_RANK_WORK = 20_000_000  # frames x resamples from which SROCC's resamples are split over threads


def _cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
RANK_FORM_MAX_CLIPS = 32  # up to this many clips, a resample's SROCC is a cubic form in clip counts (C³ terms)
HIGHER_IS_BETTER = {"plcc": True, "srocc": True, "krcc": True, "rmse": False,
                    "plcc_logistic": True, "rmse_logistic": False}


# PLCC, SROCC and KRCC without ``scipy.stats``: importing it costs ~0.6 s, more than a
# plain gate run spends scoring, so it is imported only for bootstrap and logistic metrics.
# Each function repeats scipy.stats' own arithmetic (same dtype, same operations in the
# same order), so the results equal pearsonr/spearmanr/kendalltau bit for bit
# (tests/test_correlations.py holds them to that on varied data).


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.pearsonr(x, y).statistic``: centred, max-scaled norms, clipped dot product."""
    import numpy as np

    dtype = np.result_type(x, y)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    x = np.asarray(x, dtype=dtype)
    y = np.asarray(y, dtype=dtype)
    if x.size < 2 or (x == x[0]).all() or (y == y[0]).all():
        return math.nan
    xm = x - x.mean()
    ym = y - y.mean()
    xmax = np.abs(xm).max()
    ymax = np.abs(ym).max()
    with np.errstate(invalid="ignore", divide="ignore"):
        normxm = xmax * np.linalg.norm(xm / xmax, ord=2, axis=-1)  # reduce, as scipy: not dot()
        normym = ymax * np.linalg.norm(ym / ymax, ord=2, axis=-1)
        r = np.vecdot(xm / normxm, ym / normym)
    r = np.clip(r, -1.0, 1.0)
    return float(np.round(r)) if x.size == 2 else float(r)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x)`` (method "average"), as float64: tied values share their mean rank."""
    import numpy as np

    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    # 1-based ranks starts+1 .. ends share (starts + 1 + ends) / 2: exact in float64
    mean_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.spearmanr(x, y).statistic``: ``np.corrcoef`` of the average ranks, as scipy lays them out."""
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    if x.size < 2 or (x == x[0]).all() or (y == y[0]).all():
        return math.nan
    ranked = np.column_stack((average_ranks(x), average_ranks(y)))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def ordinal_spearman(x: np.ndarray, y: np.ndarray) -> float:
    """SROCC as the team's newer harnesses compute it (``ai/scripts/eval_loso_vmaf_tiny_v3.py``
    ``_metrics``): ranks ``argsort(argsort(v))`` in float64, ties not averaged, then ``np.corrcoef``.
    On tied frames (VMAF 100) it differs from :func:`spearman`; kept to reproduce their numbers."""
    import numpy as np

    rank_x = np.argsort(np.argsort(np.asarray(x, dtype=np.float64)))
    rank_y = np.argsort(np.argsort(np.asarray(y, dtype=np.float64)))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


SROCC_RANKS = {"average": spearman, "ordinal": ordinal_spearman}


def _inversions(y: np.ndarray) -> int:
    """Pairs ``i < j`` with ``y[i] > y[j]`` (integer ``y`` in ``1..n``), by a bottom-up merge sort.

    At each level the right half of every block pair counts the left-half values above it
    (``searchsorted`` on keys offset per block pair), then each pair is merged by one sort.
    """
    import numpy as np

    n = y.size
    span = n + 1
    y = y.astype(np.int64)
    position = np.arange(n)
    count = 0
    width = 1
    while width < n:
        block = position // (2 * width)
        right = (position % (2 * width)) >= width
        keys = block * span + y
        left_keys = keys[~right]  # sorted: blocks ascend, each half was sorted a level below
        count += int((np.searchsorted(left_keys, (block[right] + 1) * span, side="left")
                      - np.searchsorted(left_keys, keys[right], side="right")).sum())
        # stable (timsort): keys are runs of two sorted halves, which it merges in linear time,
        # ~2.5x faster than the default introsort at 1.2M frames; the sorted integers are the same
        y = np.sort(keys, kind="stable") - block * span
        width *= 2
    return count


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.kendalltau(x, y).statistic`` (tau-b): same dense ranks, tie counts and formula."""
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    size = x.size
    if size < 2:
        return math.nan
    perm = np.argsort(y)
    x, y = x[perm], y[perm]
    y = np.r_[True, y[1:] != y[:-1]].cumsum(dtype=np.intp)
    perm = np.argsort(x, kind="mergesort")
    x, y = x[perm], y[perm]
    x = np.r_[True, x[1:] != x[:-1]].cumsum(dtype=np.intp)
    dis = _inversions(y)  # discordant pairs: x ascends, ties in x ordered by y

    obs = np.r_[True, (x[1:] != x[:-1]) | (y[1:] != y[:-1]), True]
    cnt = np.diff(np.nonzero(obs)[0]).astype("int64", copy=False)
    ntie = int((cnt * (cnt - 1) // 2).sum())

    def tied_pairs(ranks: np.ndarray) -> int:
        counts = np.bincount(ranks).astype("int64", copy=False)
        counts = counts[counts > 1]
        return int((counts * (counts - 1) // 2).sum())

    xtie, ytie = tied_pairs(x), tied_pairs(y)
    tot = (size * (size - 1)) // 2
    if xtie == tot or ytie == tot:
        return math.nan
    con_minus_dis = tot - xtie - ytie + ntie - 2 * dis
    tau = con_minus_dis / np.sqrt(tot - xtie) / np.sqrt(tot - ytie)
    return float(np.minimum(1.0, max(-1.0, tau)))


def score(
    pred: np.ndarray, target: np.ndarray, *, model_path: Path, target_desc: str, krcc: bool = True,
    srocc_ranks: str = "average",
) -> dict[str, float]:
    """``{"n", "plcc", "srocc", "rmse"}`` of ``pred`` against ``target``, and ``"krcc"`` unless told not to.

    ``srocc_ranks`` is ``average`` (``scipy.stats.spearmanr``) or ``ordinal`` (:func:`ordinal_spearman`).

    Raises :class:`LosoInputError` where a metric would be undefined (NaN predictions, a
    constant prediction or target) rather than reporting NaN as if it were a score.
    """
    import numpy as np

    if pred.shape != target.shape:
        raise LosoInputError(
            model_path, f"model returned {pred.shape[0]} predictions for {target.shape[0]} frames of {target_desc}"
        )
    nonfinite = int(np.count_nonzero(~np.isfinite(pred)))
    if nonfinite:
        raise LosoInputError(
            model_path, f"model predicted NaN or inf for {nonfinite} of {pred.size} frames of {target_desc}",
            "check the model's weights (re-export it) and that its inputs are the features it was trained on",
        )
    if pred.size < 3:
        raise LosoInputError(model_path, f"only {pred.size} frames of {target_desc}; PLCC needs at least 3")
    if pred.min() == pred.max():
        raise LosoInputError(
            model_path,
            f"model predicts the constant {float(pred[0]):.4f} for all {pred.size} frames of {target_desc}; "
            "PLCC and SROCC are undefined",
            "the model is degenerate (e.g. every ReLU dead, or inputs on another scale than in training): "
            "retrain or re-export it",
        )
    if not np.isfinite(target).all():
        raise LosoInputError(model_path, f"VMAF target of {target_desc} holds NaN or infinite values")
    if target.min() == target.max():
        raise LosoInputError(
            model_path, f"VMAF target of {target_desc} is constant over {target.size} frames; PLCC is undefined"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate inputs were refused above
        metrics = {
            "n": int(target.size),
            "plcc": pearson(pred, target),
            "srocc": SROCC_RANKS[srocc_ranks](pred, target),
            "rmse": float(np.sqrt(((pred - target) ** 2).mean())),
        }
        if krcc:
            metrics["krcc"] = kendall_tau_b(pred, target)
        return metrics


def logistic_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """PLCC and RMSE after the 4-parameter logistic mapping used in video-quality papers (VQEG).

    ``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))`` is fitted by least squares
    (``scipy.optimize.curve_fit``) from predictions to targets, then PLCC and RMSE are
    taken of ``f(pred)`` against the targets. ``None`` when the fit does not converge.
    """
    import numpy as np
    from scipy.optimize import curve_fit
    from scipy.stats import pearsonr

    def logistic(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
        return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4)))

    x, y = pred.astype(np.float64), target.astype(np.float64)
    start = [y.max(), y.min(), float(np.median(x)), max(float(x.std()), 1e-3)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic, x, y, p0=start, maxfev=20000)
            mapped = logistic(x, *params)
            return {
                "plcc_logistic": float(pearsonr(mapped, y).statistic),
                "rmse_logistic": float(np.sqrt(((mapped - y) ** 2).mean())),
            }
    except (RuntimeError, ValueError):
        return {"plcc_logistic": None, "rmse_logistic": None}


class _Buffers:
    """Arrays reused across a batch loop's rounds: a fresh array of a million frames per pass costs
    page faults as well as the pass (a baseline's concatenation makes a dozen per resample)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple, np.ndarray] = {}

    def get(self, owner: object, name: str, shape: tuple[int, int], dtype: type) -> np.ndarray:
        import numpy as np

        key = (id(owner), name, np.dtype(dtype).str, shape[1])
        array = self._arrays.get(key)
        if array is None or len(array) < shape[0]:
            array = self._arrays[key] = np.empty(shape, dtype=dtype)
        return array[:shape[0]]


class _SortedFrames:
    """The frames sorted once by one variable, so that a resample's average ranks are a cumulative sum.

    A resample only changes how often each clip occurs, never the order of the values: frame
    weights (its clip's count) in sorted order, one ``cumsum``, and twice the average rank of
    a frame is ``C[i] + C[i - 1] + 1`` (inclusive cumulative weight at it and before it); a
    group of tied values shares ``C[last] + C[before first] + 1``. The sum of the squared
    ranks needs no per-frame work: ``n(n+1)(2n+1)/6 - Σ(G³ - G)/12`` over tie groups G, where a
    frame tied with no other is a group of its clip's count.
    """

    def __init__(self, values: np.ndarray, clip_of_frame: np.ndarray, n_clips: int) -> None:
        import numpy as np

        self.order = np.argsort(values, kind="stable")
        ordered = values[self.order]
        new_group = np.r_[True, ordered[1:] != ordered[:-1]]
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.r_[starts, len(values)])
        self.clip = clip_of_frame[self.order]
        tied = np.repeat(sizes > 1, sizes)
        group = (np.cumsum(new_group) - 1)[tied]
        self.tied = np.flatnonzero(tied)
        self.tied_last = (starts + sizes - 1)[group]
        before = (starts - 1)[group]
        self.tied_before = np.maximum(before, 0)
        self.tied_at_start = np.flatnonzero(before < 0)  # the first group has no frame before it
        self.tied_group_starts = np.searchsorted(self.tied, starts[sizes > 1])
        self.untied_per_clip = np.bincount(self.clip[~tied], minlength=n_clips).astype(np.float64)

    def double_ranks(self, counts: np.ndarray, dtype: type, buffers: _Buffers) -> tuple[np.ndarray, np.ndarray]:
        """Twice the average ranks (rows, frames in this order) and the frame weights, as ``dtype`` integers."""
        import numpy as np

        shape = (len(counts), len(self.clip))
        # take: ~1.6x faster than fancy indexing ("clip": an ``out`` is not buffered, the indices are valid)
        weights = np.take(counts.astype(dtype), self.clip, axis=-1, out=buffers.get(self, "w", shape, dtype),
                          mode="clip")
        cumulative = np.cumsum(weights, axis=-1, dtype=dtype, out=buffers.get(self, "c", shape, dtype))
        ranks = np.add(cumulative, 1, out=buffers.get(self, "r", shape, dtype))
        ranks[:, 1:] += cumulative[:, :-1]
        if len(self.tied):
            tied = cumulative[:, self.tied_last] + cumulative[:, self.tied_before] + 1
            tied[:, self.tied_at_start] -= cumulative[:, self.tied_before[self.tied_at_start]]
            ranks[:, self.tied] = tied
        return ranks, weights

    def sum_of_squared_ranks(self, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
        """``Σ R²`` over each resample's frames (ties averaged), from clip counts alone (and the tied frames')."""
        import numpy as np

        cubes = (counts**3) @ self.untied_per_clip
        if len(self.tied):
            groups = np.add.reduceat(counts[:, self.clip[self.tied]], self.tied_group_starts, axis=-1)
            cubes += (groups**3).sum(axis=-1)
        return n * (n + 1) * (2 * n + 1) / 6 - (cubes - n) / 12


class _RankSums:
    """SROCC of many resamples of many clips: each variable sorted once, ranks by cumulative sums.

    Per resample the work is a few passes over the frames in integers (exact) and one float
    dot product; the pairing of x's and y's ranks uses one precomputed permutation.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, clip_of_frame: np.ndarray, n_clips: int) -> None:
        import numpy as np

        self.x = _SortedFrames(x, clip_of_frame, n_clips)
        self.y = _SortedFrames(y, clip_of_frame, n_clips)
        position_in_x = np.empty(len(x), dtype=np.intp)
        position_in_x[self.x.order] = np.arange(len(x))
        self.x_of_y = position_in_x[self.y.order]  # y-order -> where that frame is in x-order
        self.batch = max(1, BOOTSTRAP_BATCH_FRAMES // max(len(x), 1))

    def srocc(self, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
        """SROCC (rows) of the multisets with clip counts ``counts`` (rows, n_clips) of ``n`` frames each.

        Rows are independent, so a large concatenation's rows are split over the available cores:
        numpy's passes release the GIL, and a baseline's 1.2M frames are memory-bound work that two
        threads do in ~0.55x the time (same numbers: each row is computed as it would be alone).
        """
        import numpy as np

        workers = min(_cores(), len(counts)) if len(self.x.order) * len(counts) >= PARALLEL_RANK_WORK else 1
        if workers <= 1:
            return self._srocc(counts, n)
        from concurrent.futures import ThreadPoolExecutor

        parts = np.array_split(np.arange(len(counts)), workers)
        with ThreadPoolExecutor(workers) as pool:
            return np.concatenate(list(pool.map(lambda rows: self._srocc(counts[rows], n[rows]), parts)))

    def _srocc(self, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
        import numpy as np

        rxy, rxx, ryy = np.empty(len(counts)), np.empty(len(counts)), np.empty(len(counts))
        buffers = _Buffers()
        for start in range(0, len(counts), self.batch):
            rows, sizes = counts[start:start + self.batch], n[start:start + self.batch]
            # 2 * rank * rank * weight stays an integer; int32 when the largest rank product cannot overflow
            largest = 2 * float(sizes.max()) + 1
            dtype = np.int32 if largest * max(float(rows.max()), 1.0) < 2**31 else np.int64
            rx, _ = self.x.double_ranks(rows, dtype, buffers)
            ry, wy = self.y.double_ranks(rows, dtype, buffers)
            shape = ry.shape
            weighted_rx = np.take(rx, self.x_of_y, axis=-1, out=buffers.get(self, "g", shape, dtype), mode="clip")
            weighted_rx *= wy
            product = np.multiply(weighted_rx, ry, out=buffers.get(self, "p", shape, np.float64), dtype=np.float64)
            rxy[start:start + self.batch] = product.sum(axis=-1) / 4
            rxx[start:start + self.batch] = self.x.sum_of_squared_ranks(rows, sizes)
            ryy[start:start + self.batch] = self.y.sum_of_squared_ranks(rows, sizes)
        rank_sum = n * (n + 1) / 2  # average ranks always sum to this
        with np.errstate(invalid="ignore", divide="ignore"):
            return (n * rxy - rank_sum**2) / np.sqrt((n * rxx - rank_sum**2) * (n * ryy - rank_sum**2))


class ClipStatistic:
    """PLCC, SROCC and RMSE of any multiset of clips, without concatenating frames.

    A resample (or a jackknife sample) is a count per clip. PLCC and RMSE need only per-clip
    sums (n, Σx, Σy, Σxx, Σyy, Σxy, Σ(x−y)²), so a whole batch of resamples is one
    counts-matrix product. SROCC needs ranks: the frames are sorted once and the ranks of a
    resample are a weighted cumulative sum over that order. The values equal ``pearsonr`` /
    ``spearmanr`` / RMSE of the explicitly concatenated resample, to float rounding.
    """

    def __init__(self, pred: np.ndarray, target: np.ndarray, clip_frames: tuple[int, ...]) -> None:
        import numpy as np

        self.n_clips = len(clip_frames)
        self.clip_of_frame = np.repeat(np.arange(self.n_clips), clip_frames)
        # shifted first by one common offset (which changes none of the metrics): sums stay well conditioned
        offset = float(target.astype(np.float64).mean())
        x = pred.astype(np.float64) - offset
        y = target.astype(np.float64) - offset
        columns = (np.ones_like(x), x, y, x * x, y * y, x * y, (x - y) ** 2)
        self.sums = np.stack([np.bincount(self.clip_of_frame, weights=c, minlength=self.n_clips) for c in columns],
                             axis=1)
        if self.n_clips <= RANK_FORM_MAX_CLIPS:
            self.rank_forms = self._rank_forms(x, y, clip_frames)
        else:
            self.rank_forms = None
            self.rank_sums = _RankSums(x, y, self.clip_of_frame, self.n_clips)

    def _rank_forms(self, x: np.ndarray, y: np.ndarray, clip_frames: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """Per-clip tensors that make a resample's rank sums a cubic form in its clip counts.

        In a resample with clip counts k, frame i's average rank is ``Σ_c k_c M[c, i] + 1/2``
        with ``M[c, i]`` = frames of clip c below ``x_i`` plus half those equal (ties included),
        so with ``k~ = [k, 1]`` and ``M~ = [M; 1/2]``, ``Σ_i w_i Rx_i Ry_i = Σ_c k_c k~ᵀ T[c] k~``
        where ``T[c] = Σ_{i in c} M~x[:, i] M~y[:, i]ᵀ``: no per-frame work per resample.
        """
        import numpy as np

        bounds = np.cumsum([0, *clip_frames])

        def below(values: np.ndarray) -> np.ndarray:
            # one sort: per clip, a cumulative count of its frames along the sorted values, read at each
            # frame's tie group (those before the group, plus half of those in it)
            order = np.argsort(values, kind="stable")
            ordered = values[order]
            new_group = np.r_[True, ordered[1:] != ordered[:-1]]
            starts = np.flatnonzero(new_group)
            group = np.cumsum(new_group) - 1
            last = np.r_[starts[1:], len(values)][group] - 1
            cumulative = np.cumsum(np.eye(self.n_clips)[self.clip_of_frame[order]], axis=0)
            upto = cumulative[last]
            before = np.where((starts[group] > 0)[:, None], cumulative[starts[group] - 1], 0.0)
            m = np.empty((self.n_clips + 1, len(values)))
            m[:-1, order] = ((before + upto) / 2).T
            m[-1] = 0.5
            return m

        mx, my = below(x), below(y)

        def per_clip(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.stack([a[:, bounds[c]:bounds[c + 1]] @ b[:, bounds[c]:bounds[c + 1]].T
                             for c in range(self.n_clips)])

        return per_clip(mx, my), per_clip(mx, mx), per_clip(my, my)

    def counts(self, clips: np.ndarray) -> np.ndarray:
        """How often each clip occurs in each row of clip indices ``clips`` (..., k) -> (rows, n_clips)."""
        import numpy as np

        rows = clips.reshape(-1, clips.shape[-1])
        offsets = (rows + self.n_clips * np.arange(len(rows))[:, None]).ravel()
        return np.bincount(offsets, minlength=len(rows) * self.n_clips).reshape(len(rows), self.n_clips)

    def __call__(self, clips: np.ndarray, axis: int = -1) -> np.ndarray:
        """``[plcc, srocc, rmse]`` (3, ...) of the resamples given as clip indices (..., k), as scipy calls it."""
        import numpy as np

        clips = np.asarray(clips)
        values = self.of_counts(self.counts(clips).astype(np.float64))
        return values.reshape(3, *clips.shape[:-1])

    def jackknife(self, max_groups: int) -> np.ndarray:
        """``[plcc, srocc, rmse]`` (3, groups) leaving out one group of consecutive clips at a time.

        One clip per group up to ``max_groups`` clips (the ordinary jackknife BCa uses); beyond,
        clips are pooled into ``max_groups`` groups, so the cost stays bounded on a baseline's
        thousands of clips (a delete-a-group jackknife estimates the same acceleration).
        """
        import numpy as np

        groups = min(self.n_clips, max_groups)
        group_of_clip = np.arange(self.n_clips) * groups // self.n_clips
        return self.of_counts((group_of_clip[None, :] != np.arange(groups)[:, None]).astype(np.float64))

    def of_counts(self, counts: np.ndarray) -> np.ndarray:
        """``[plcc, srocc, rmse]`` (3, rows) of the multisets with clip counts ``counts`` (rows, n_clips)."""
        import numpy as np

        n, sx, sy, sxx, syy, sxy, sdd = (counts @ self.sums).T
        with np.errstate(invalid="ignore", divide="ignore"):
            plcc = (n * sxy - sx * sy) / np.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))
            rmse = np.sqrt(sdd / n)
        if self.rank_forms is None:
            return np.stack([plcc, self.rank_sums.srocc(counts, n), rmse])
        augmented = np.concatenate([counts, np.ones((len(counts), 1))], axis=1)
        rxy, rxx, ryy = (self._cubic(counts, augmented, t) for t in self.rank_forms)
        rank_sum = n * (n + 1) / 2  # average ranks always sum to this
        with np.errstate(invalid="ignore", divide="ignore"):
            srocc = (n * rxy - rank_sum**2) / np.sqrt((n * rxx - rank_sum**2) * (n * ryy - rank_sum**2))
        return np.stack([plcc, srocc, rmse])

    @staticmethod
    def _cubic(counts: np.ndarray, augmented: np.ndarray, forms: np.ndarray) -> np.ndarray:
        """``Σ_c k_c k~ᵀ T[c] k~`` per row, as two matrix products (not a general einsum: ~50× faster)."""
        clips, size, _ = forms.shape
        inner = (augmented @ forms.transpose(1, 0, 2).reshape(size, clips * size)).reshape(-1, clips, size)
        return ((inner * augmented[:, None, :]).sum(axis=-1) * counts).sum(axis=-1)


CI_METHOD = "BCa"  # bias-corrected and accelerated: covers the estimate where resampling biases a metric
JACKKNIFE_GROUPS = 100  # BCa's acceleration from at most this many leave-one-out statistics (a group each beyond)


def _bca(estimate: np.ndarray, distribution: np.ndarray, jackknife: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% BCa bounds per row, as ``scipy.stats.bootstrap(method="BCa")`` computes them (Efron & Tibshirani 14.3).

    ``distribution`` (metrics, resamples) is the bootstrap distribution, ``jackknife``
    (metrics, groups) the leave-one-out statistics. NaN where BCa is undefined.
    """
    import numpy as np
    from scipy.special import ndtr, ndtri
    from scipy.stats import quantile

    column = estimate[:, None]
    below = (np.count_nonzero(distribution < column, axis=-1) + np.count_nonzero(distribution <= column, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z0 = ndtri(below / (2 * distribution.shape[-1]))
        groups = jackknife.shape[-1]
        u = (groups - 1) * (jackknife.mean(axis=-1, keepdims=True) - jackknife)
        accel = (u**3).sum(-1) / groups**3 / 6 / ((u**2).sum(-1) / groups**2) ** 1.5
        z_alpha = float(ndtri(0.025))
        bounds = [ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z))) for z in (z_alpha, -z_alpha)]
    levels = np.stack(bounds, axis=-1)
    finite = np.isfinite(levels).all(axis=-1)
    ci = np.full((len(estimate), 2), np.nan)
    if finite.any():
        ci[finite] = quantile(distribution[finite], levels[finite], axis=-1)
    return ci[:, 0], ci[:, 1]


def _covering_interval(estimate: float, bca: tuple[float, float], percentile: tuple[float, float],
                       bca_name: str = CI_METHOD) -> tuple[list[float], str]:
    """The BCa interval, else the percentile one, else that extended to the estimate; and which it is.

    BCa is undefined for a degenerate jackknife (e.g. a perfect predictor), and with very few
    clips its discrete resampling distribution can leave the estimate outside; an interval
    that excludes its own estimate is never reported.
    """
    low, high = bca
    if math.isfinite(low) and math.isfinite(high) and low <= estimate <= high:
        return [low, high], bca_name
    reason = "BCa undefined" if not (math.isfinite(low) and math.isfinite(high)) else "BCa excludes the estimate"
    low, high = percentile
    if low <= estimate <= high:
        return [low, high], f"percentile ({reason})"
    return [min(low, estimate), max(high, estimate)], f"percentile extended to the estimate ({reason}; few clips)"


@dataclass
class Bootstrap:
    """One statistic's bootstrap: its estimate, resampled values and covering 95% intervals (with their method)."""

    estimate: np.ndarray  # (3,) plcc, srocc, rmse
    distribution: np.ndarray  # (3, resamples)
    jackknife: np.ndarray  # (3, groups)
    intervals: dict[str, list[float] | None]
    methods: dict[str, str]
    bca_name: str = CI_METHOD

    def minus(self, accepted: Bootstrap) -> Bootstrap:
        """The paired bootstrap of ``self − accepted``: both drawn with one seed over the same clips, so
        resample j of each is the same multiset of clips (one counts matrix applied to both models'
        predictions), and the differences are the bootstrap distribution of the difference."""
        estimate = self.estimate - accepted.estimate
        distribution = self.distribution - accepted.distribution
        jackknife = self.jackknife - accepted.jackknife
        intervals, methods = covering_intervals(estimate, distribution, jackknife, self.bca_name)
        return Bootstrap(estimate, distribution, jackknife, intervals, methods, self.bca_name)


def bootstrap(statistic: ClipStatistic, *, n_resamples: int, seed: int) -> Bootstrap:
    """Resample ``statistic``'s clips with replacement; BCa intervals with named fallbacks.

    The resamples are the draws ``scipy.stats.bootstrap`` makes (``rng.integers(0, clips,
    (resamples, clips))`` in one batch, ``rng = default_rng(seed)``), taken directly: its
    per-call machinery costs more than a fold's whole statistic. ``tests/test_compare.py``
    holds the intervals equal to ``scipy.stats.bootstrap`` on explicitly concatenated frames.
    The same ``seed`` and clip count draw the same resamples (see :meth:`Bootstrap.minus`).
    """
    import numpy as np

    clips = np.random.default_rng(seed).integers(0, statistic.n_clips, (n_resamples, statistic.n_clips))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a perfect predictor's distribution is degenerate; handled below
        distribution = statistic(clips)
        estimate = statistic.of_counts(np.ones((1, statistic.n_clips)))[:, 0]
        jackknife = statistic.jackknife(JACKKNIFE_GROUPS)
    bca_name = CI_METHOD if statistic.n_clips <= JACKKNIFE_GROUPS else \
        f"{CI_METHOD} (jackknife over {JACKKNIFE_GROUPS} groups of clips)"
    intervals, methods = covering_intervals(estimate, distribution, jackknife, bca_name)
    return Bootstrap(estimate, distribution, jackknife, intervals, methods, bca_name)


def covering_intervals(estimate: np.ndarray, distribution: np.ndarray, jackknife: np.ndarray,
                       bca_name: str = CI_METHOD) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per metric (rows of ``METRICS``), the BCa interval of ``distribution`` or its named fallback."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = _bca(estimate, distribution, jackknife)
        fallback_low, fallback_high = np.percentile(distribution, [2.5, 97.5], axis=-1)
    intervals, methods = {}, {}
    for i, name in enumerate(METRICS):
        intervals[name], methods[name] = _covering_interval(
            float(estimate[i]), (float(low[i]), float(high[i])), (float(fallback_low[i]), float(fallback_high[i])),
            bca_name)
    return intervals, methods


def bootstrap_intervals(
    pred: np.ndarray, target: np.ndarray, pair_frames: tuple[int, ...], *, n_resamples: int, seed: int
) -> tuple[dict[str, list[float] | None], dict[str, str]]:
    """95% intervals of PLCC, SROCC and RMSE by ``scipy.stats.bootstrap`` over the source's *pairs*, and their method.

    Frames of one clip are strongly correlated, so clips (not frames) are resampled: a
    resample is a multiset of pairs, its metric that of their concatenated frames
    (:class:`ClipStatistic`). Resampling clips duplicates frames, which ties ranks and biases
    SROCC downward, so a percentile interval can miss its own estimate: the intervals are BCa,
    which corrects that bias. Where BCa is undefined or misses the estimate anyway (see
    :func:`_covering_interval`), the percentile interval of the same resamples is used and named. Seeded: the
    same inputs give the same intervals. ``None`` intervals with < 2 pairs.
    """
    if len(pair_frames) < 2 or n_resamples <= 0:
        return {name: None for name in METRICS}, {}
    result = bootstrap(ClipStatistic(pred, target, pair_frames), n_resamples=n_resamples, seed=seed)
    return result.intervals, result.methods


def two_stage_intervals(estimates: np.ndarray, distributions: np.ndarray, *, seed: int
                        ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """95% intervals of the mean over folds: resample the folds' sources, then clips within each.

    ``estimates`` (folds, 3) are the folds' metrics, ``distributions`` (folds, 3, resamples)
    their own clip bootstraps. A two-stage resample draws the folds with replacement and, for
    each drawn fold, one of its clip resamples at random (a draw of that source's clips), and
    takes the mean. BCa's acceleration comes from leaving out one fold at a time.
    """
    import numpy as np

    folds, _, resamples = distributions.shape
    rng = np.random.default_rng([seed, folds])
    chosen = rng.integers(0, folds, (resamples, folds))
    draws = rng.integers(0, resamples, (resamples, folds))
    distribution = distributions[chosen, :, draws].mean(axis=1).T  # (3, resamples)
    estimate = estimates.mean(axis=0)
    jackknife = ((estimates.sum(axis=0) - estimates) / max(folds - 1, 1)).T  # (3, folds)
    return covering_intervals(estimate, distribution, jackknife, f"{CI_METHOD} (two-stage: sources, then clips)")


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


def across_seeds(per_seed: dict[int, dict[str, dict]]) -> dict:
    """A run repeated over seeds: ``{seed: {source: fold metrics}}`` -> the promotion figures.

    Per seed the mean over its folds (as :func:`aggregate`); across seeds the mean of the
    per-seed means, their sample std (ddof=1), their spread max - min and the lowest seed
    (as the team's ``ensemble_prod_gate.py`` does on PLCC); and for each fold its mean and
    std across seeds.
    """
    import numpy as np

    seeds = sorted(per_seed)
    means = {seed: aggregate(per_seed[seed].values()) for seed in seeds}
    summary: dict = {"seeds": seeds, "n_seeds": len(seeds), "per_seed": means}
    for name in METRICS:
        values = np.array([means[seed][f"mean_{name}"] for seed in seeds])
        summary[f"mean_{name}"] = float(np.mean(values))
        summary[f"std_{name}"] = float(np.std(values, ddof=1)) if len(seeds) > 1 else None
        summary[f"spread_{name}"] = float(values.max() - values.min())
    lowest = min(seeds, key=lambda seed: means[seed]["mean_plcc"])
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


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: undefined numbers are written as null."""
    return None if value is None or not math.isfinite(value) else value
