"""Small models and caches for the example corpus, the tests and the benchmark.

Not used by the gate itself: numpy-trained regressors (linear, or MLP with ReLU) exported
with ``onnx.helper``, weights optionally in an external-data sibling, and writers for the
feature-cache schema the gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_loso.extract import write_cache
from pytest_loso.features import FEATURE_NAMES

ARCH_HIDDEN = {"linear": (), "mlp_small": (16, 8), "mlp_medium": (32, 64)}


@dataclass
class Regressor:
    """Dense layers ``(weight (in, out), bias (out,))``; ReLU between, none after the last."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def predict(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(-1)


def train(x: np.ndarray, y: np.ndarray, arch: str = "mlp_small", *, steps: int = 400, seed: int = 0) -> Regressor:
    """Fit ``arch`` to ``(x, y)``: least squares for ``linear``, full-batch Adam for MLPs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if arch == "linear":
        design = np.hstack([x, np.ones((len(x), 1))])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return Regressor([(coef[:-1, None], coef[-1:])])
    # Train on standardised inputs, then fold the scaling into the first layer: the
    # exported model takes raw libvmaf features, as the team's models do.
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    x = (x - mean) / scale
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *ARCH_HIDDEN[arch], 1]
    params = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        params += [rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)), np.zeros(fan_out)]
    params[-1][:] = y.mean()
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    for step in range(1, steps + 1):
        acts = [x]
        for i in range(0, len(params), 2):
            z = acts[-1] @ params[i] + params[i + 1]
            acts.append(np.maximum(z, 0) if i < len(params) - 2 else z)
        grad_out = 2 * (acts[-1].reshape(-1) - y)[:, None] / len(y)
        grads = [np.zeros_like(p) for p in params]
        for layer in reversed(range(len(params) // 2)):
            grads[2 * layer] = acts[layer].T @ grad_out
            grads[2 * layer + 1] = grad_out.sum(axis=0)
            if layer:
                grad_out = (grad_out @ params[2 * layer].T) * (acts[layer] > 0)
        for i, g in enumerate(grads):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            params[i] -= lr * (m[i] / (1 - beta1**step)) / (np.sqrt(v[i] / (1 - beta2**step)) + 1e-8)
    w0, b0 = params[0] / scale[:, None], params[1] - (mean / scale) @ params[0]
    layers = [(w0, b0)] + [(params[i], params[i + 1]) for i in range(2, len(params), 2)]
    return Regressor(layers)


def export_onnx(model: Regressor, path: Path, *, external_data: bool = True) -> Path:
    """Write ``model`` as ONNX (input ``features`` [batch, k] float32, output ``vmaf`` [batch, 1]).

    With ``external_data`` the weights go to ``<path>.data`` beside it, as the training
    pipeline saves them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    current = "features"
    for i, (w, b) in enumerate(model.layers):
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
            numpy_helper.from_array(b.astype(np.float32), f"B{i}"),
        ]
        out = "vmaf" if i == len(model.layers) - 1 else f"h{i}"
        gemm_out = out if i == len(model.layers) - 1 else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [gemm_out]))
        if i < len(model.layers) - 1:
            nodes.append(helper.make_node("Relu", [gemm_out], [out]))
        current = out
    width = model.layers[0][0].shape[0]
    graph = helper.make_graph(
        nodes,
        "vmaf_tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("vmaf", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytest-loso")
    proto.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data:
        onnx.save_model(
            proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=path.name + ".data", size_threshold=0,
        )
    else:
        onnx.save_model(proto, str(path))
    return path


def cache_payload(features: np.ndarray, scores: np.ndarray, names: tuple[str, ...] = FEATURE_NAMES) -> dict:
    """One pair's cache document in the schema the training scripts write."""
    return {
        "features": {"feature_names": list(names), "per_frame": np.asarray(features).tolist(),
                     "n_frames": int(len(features))},
        "scores": {"per_frame": np.asarray(scores).tolist(), "pooled": float(np.mean(scores))},
    }


def synthetic_source(source_index: int, n_pairs: int, frames: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plausible per-pair (features, VMAF) arrays: a smooth function of the features, a per-source
    offset and frame noise, so LOSO models score well but not perfectly."""
    rng = np.random.default_rng([seed, source_index])
    offset = rng.normal(0, 3)
    pairs = []
    for quality in np.linspace(0.15, 0.95, n_pairs):
        drift = np.cumsum(rng.normal(0, 0.01, frames))
        base = np.clip(quality + drift, 0.02, 0.99)
        x = np.clip(
            base[:, None] * np.array([1.0, 0.55, 0.8, 0.9, 0.95, 0.0])
            + rng.normal(0, 0.02, (frames, 6))
            + np.array([0, 0, 0, 0, 0, 1.0]) * rng.uniform(0, 8, (frames, 1)),
            0,
            None,
        )
        y = np.clip(100 / (1 + np.exp(-7 * (base - 0.5))) + offset + rng.normal(0, 1.5, frames), 0, 100)
        pairs.append((x.astype(np.float32), y.astype(np.float32)))
    return pairs


def synthetic_corpus(
    root: Path, n_sources: int, *, pairs_per_source: int = 4, frames: int = 30, seed: int = 0,
    names: list[str] | None = None,
) -> tuple[Path, Path, dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """Write ``root/corpus`` (empty placeholder YUVs: the gate reads only names) and ``root/cache``.

    Sources are ``Src0000``, ``Src0001``, ... unless ``names`` gives them (one per source).
    Returns ``(data_root, cache_dir, {source: [(features, scores) per pair in file order]})``.
    """
    data_root, cache_dir = root / "corpus", root / "cache"
    (data_root / "ref").mkdir(parents=True, exist_ok=True)
    (data_root / "dis").mkdir(parents=True, exist_ok=True)
    truth = {}
    for index in range(n_sources):
        source = names[index] if names else f"Src{index:04d}"
        (data_root / "ref" / f"{source}_24fps.yuv").touch()
        truth[source] = synthetic_source(index, pairs_per_source, frames, seed)
        for rung, (x, y) in enumerate(truth[source]):
            stem = f"{source}_{rung:02d}_{360 + 120 * rung}_{500 * (rung + 1)}"
            (data_root / "dis" / f"{stem}.yuv").touch()
            write_cache(cache_dir / source / f"{stem}.json", cache_payload(x, y))
    return data_root, cache_dir, truth


def train_folds(
    loso_dir: Path, truth: dict[str, list[tuple[np.ndarray, np.ndarray]]], arch: str = "mlp_small", *, steps: int = 300,
    seed: int = 0,
) -> dict[str, Regressor]:
    """Train one ``arch`` model per held-out source and export ``fold_<Source>/<arch>_final.onnx``."""
    models = {}
    for held_out in truth:
        x = np.concatenate([p[0] for s, pairs in truth.items() if s != held_out for p in pairs])
        y = np.concatenate([p[1] for s, pairs in truth.items() if s != held_out for p in pairs])
        models[held_out] = train(x, y, arch, steps=steps, seed=seed)
        export_onnx(models[held_out], loso_dir / f"fold_{held_out}" / f"{arch}_final.onnx")
    return models
