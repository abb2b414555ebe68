"""PLCC, SROCC and RMSE of any multiset of clips, computed from per-clip sums and ranks sorted once.

A bootstrap resample (or a jackknife sample) of a source's clips is a count per clip; the
classes here turn a batch of such counts into the metrics of each multiset without
concatenating frames, to float rounding equal to the metrics of the concatenation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

BOOTSTRAP_BATCH_FRAMES = 100_000  # resamples x frames held at once: small enough to stay in cache
RANGE_CELLS = 131_072  # resamples x frames of y's ranks made at a time (a baseline's 1.2M frames are split)
PARALLEL_RANK_WORK = 20_000_000  # frames x resamples from which SROCC's resamples are split over threads
RANK_FORM_MAX_CLIPS = 32  # up to this many clips, a resample's SROCC is a cubic form in clip counts (C³ terms)


def _cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
        # which clips' frames each group of tied values holds, and how many: a group's weight in a
        # resample is one sparse product with the clip counts (~7x faster than gathering its frames)
        from scipy.sparse import csr_matrix

        n_groups = int(np.count_nonzero(sizes > 1))
        group_of_tied = np.repeat(np.arange(n_groups), sizes[sizes > 1])
        self.tie_groups = csr_matrix((np.ones(len(self.tied)), (group_of_tied, self.clip[self.tied])),
                                     shape=(n_groups, n_clips))
        self.tie_groups.sum_duplicates()
        self.tied_first = starts[group]
        self.group_starts = starts
        self.untied_per_clip = np.bincount(self.clip[~tied], minlength=n_clips).astype(np.float64)

    def ranges(self, width: int) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """Ranges ``[start, end)`` of about ``width`` frames that split no group of tied values, each
        with its tied frames' positions in the range and, for each, where its group's last frame and
        the frame before its group's first are in the range's cumulative sums prefixed by the sum
        before the range (index 0), so a range's ranks need nothing from the others but that sum."""
        import numpy as np

        size = len(self.clip)
        targets = np.arange(width, size, width)
        snapped = np.r_[self.group_starts, size][np.searchsorted(self.group_starts, targets)]
        bounds = np.unique(np.r_[0, snapped, size])
        ranges = []
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            lo, hi = np.searchsorted(self.tied, [start, end])
            ranges.append((start, end, self.tied[lo:hi] - start, self.tied_last[lo:hi] - start + 1,
                           self.tied_first[lo:hi] - start))
        return ranges

    def ranks_by_range(self, counts: np.ndarray, dtype: type, ranges: list, out: np.ndarray | None = None
                       ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Per range of :meth:`ranges`: its bounds, twice the average ranks of its frames and their
        weights (rows, frames in this order), as ``dtype`` integers; ``counts`` (rows, clips) as ``dtype``.
        A range at a time: its arrays stay in cache where a baseline's 1.2M frames at once would not.
        With ``out`` (rows, frames) the ranks are made in place there."""
        import numpy as np

        before: np.ndarray = np.zeros((len(counts), 1), dtype=dtype)  # the cumulative weight before the range
        for start, end, tied, last, first in ranges:
            # take: ~1.6x faster than fancy indexing ("clip": the indices are valid)
            weights = np.take(counts, self.clip[start:end], axis=-1, mode="clip")
            cumulative = np.empty((len(counts), end - start + 1), dtype=dtype)
            cumulative[:, :1] = before
            np.cumsum(weights, axis=-1, dtype=dtype, out=cumulative[:, 1:])
            cumulative[:, 1:] += before
            ranks = np.add(cumulative[:, 1:], 1, out=None if out is None else out[:, start:end])
            ranks += cumulative[:, :-1]  # C[i] + C[i - 1] + 1
            if len(tied):
                ranks[:, tied] = cumulative[:, last] + cumulative[:, first] + 1
            before = cumulative[:, -1:].copy()
            yield start, end, ranks, weights

    def sum_of_squared_ranks(self, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
        """``Σ R²`` over each resample's frames (ties averaged), from clip counts alone (and the tie groups')."""
        cubes = (counts**3) @ self.untied_per_clip
        if len(self.tied):
            groups = (self.tie_groups @ counts.T).T
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
        # x's ranks whole (they are gathered in y's order: held anyway), y's a range at a time
        self.x_ranges, self.y_ranges = self.x.ranges(len(x)), self.y.ranges(max(1, RANGE_CELLS // self.batch))

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

    def _weighted_rank_products(self, counts: np.ndarray, dtype: type, buffers: _Buffers) -> np.ndarray:
        """``Σ w·Rx·Ry`` (four times: twice-ranks) per row: x's ranks made in x's order, then y's a range
        at a time, each multiplied there with x's of the same frames (~1.3x faster than whole passes)."""
        import numpy as np

        rx = buffers.get(self, "rx", (len(counts), len(self.x_of_y)), dtype)
        for _ in self.x.ranks_by_range(counts, dtype, self.x_ranges, out=rx):
            pass
        total = np.zeros(len(counts))
        for start, end, ranks, weights in self.y.ranks_by_range(counts, dtype, self.y_ranges):
            weighted_rx = np.take(rx, self.x_of_y[start:end], axis=-1, mode="clip")
            weighted_rx *= weights
            total += np.multiply(weighted_rx, ranks, dtype=np.float64).sum(axis=-1)
        return total

    def _srocc(self, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
        import numpy as np

        rxy, rxx, ryy = np.empty(len(counts)), np.empty(len(counts)), np.empty(len(counts))
        buffers = _Buffers()
        for start in range(0, len(counts), self.batch):
            rows, sizes = counts[start:start + self.batch], n[start:start + self.batch]
            # 2 * rank * rank * weight stays an integer; int32 when the largest rank product cannot overflow
            largest = 2 * float(sizes.max()) + 1
            dtype = np.int32 if largest * max(float(rows.max()), 1.0) < 2**31 else np.int64
            rxy[start:start + self.batch] = self._weighted_rank_products(rows.astype(dtype), dtype, buffers) / 4
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
        self.rank_forms: tuple[np.ndarray, ...] | None  # None: too many clips, ranks by _RankSums instead
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
