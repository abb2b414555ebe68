"""Model sidecars (issue 9 items 1 and 2): ``X.json`` beside ``X.onnx`` says how to feed the model.

The models are built here with onnx.helper; every expected number comes from a float64
numpy forward pass with the fork's input recipe written out independently below
(ai/scripts/train_fr_regressor_v2_ensemble_loso.py:_load_corpus: standardisation, encoder
one-hot over encoder_vocab with the ``unknown`` slot, preset_norm 0.5, crf_norm over the
training corpus's cq range).
"""

from __future__ import annotations

import shutil
import json
from pathlib import Path

import numpy as np
import pytest
from loso_helpers import BASELINE_TAG, SOURCES, assert_close, independent_metrics

from pytest_loso.errors import LosoInputError
from pytest_loso.features import FEATURE_NAMES
from pytest_loso.models import load_model
from sidecar_helpers import MEAN, ORDER, STD, _save, _sidecar, _weights
from sidecar_helpers import CQ_RANGE, VOCAB, _codec_sidecar, _frames, _layout, _source
from shared_runs import template_gate  # noqa: F401 (a fixture: runs that only read the template)

NODE = f"loso::baseline[{BASELINE_TAG}]"
# The shipped fr_regressor_v3.json's training corpus (its corpus_sha256), whose cq range is 19..37.
PHASE_A_SHA = "58512e6c2400a8c7962d29f6a16fa090e6742f5746f2897128c381fb00808e3f"
V2_VOCAB = ["libx264", "libx265", "libsvtav1", "h264_nvenc", "hevc_qsv", "unknown"]
V3_VOCAB = ["libx264", "libaom-av1", "libx265", "h264_nvenc", "libsvtav1"]  # no unknown: slot 0


W1, B1, W2, B2, WC = _weights()


def _v2_sidecar(model: Path) -> Path:
    """As train_fr_regressor_v2.py writes it: vocab version 2, no corpus."""
    return _sidecar(model, input_names=["features", "codec"], encoder_vocab=V2_VOCAB,
                    codec_block_layout=_layout(V2_VOCAB), encoder_vocab_version=2)


def _v3_sidecar(model: Path, sha: str = PHASE_A_SHA) -> Path:
    """As train_fr_regressor_v3.py writes it: vocab version 3, corpus a path and its sha256."""
    return _sidecar(model, input_names=["features", "codec"], encoder_vocab=V3_VOCAB,
                    codec_block_layout=_layout(V3_VOCAB), encoder_vocab_version=3,
                    corpus="runs/phase_a/full_grid/per_frame_canonical6.jsonl", corpus_sha256=sha)


# -- the fork's codec blocks, written out from its code for these tests ------------------------

def _minmax_block(encoders, cqs, vocab, fallback: int, lo: float = 19.0, hi: float = 37.0) -> np.ndarray:
    """train_fr_regressor_v2_ensemble_loso.py / train_fr_regressor_v3.py:_load_corpus."""
    onehot = np.zeros((len(encoders), len(vocab)))
    for row, enc in enumerate(encoders):
        onehot[row, vocab.index(enc) if enc in vocab else fallback] = 1.0
    return np.column_stack([onehot, np.full(len(cqs), 0.5), (np.asarray(cqs, dtype=np.float64) - lo) / (hi - lo)])


# train_fr_regressor_v2.py:_encoder_index (strip, lower, aliases) for the names these tests use ...
V2_SLOT = {"libx264": "libx264", " X265 ": "libx265", "libsvtav1": "libsvtav1", "h264_nvenc": "h264_nvenc",
           "hevc_qsv": "hevc_qsv", "libfoo": "unknown"}
# ... and _preset_ordinal: the table of the encoder as written (" X265 " -> "x265": no table, 5),
# str(preset) looked up, 5 when unlisted; the ordinal over 9.
V2_ORDINAL = {("libx264", "veryslow"): 8, ("libx264", "veryfast"): 2, (" X265 ", "slow"): 5, ("libsvtav1", 8): 8,
              ("libsvtav1", 13): 9, ("h264_nvenc", "p7"): 9, ("hevc_qsv", "fast"): 4, ("libfoo", "medium"): 5,
              ("libx264", None): 5, ("h264_nvenc", None): 5}


def _v2_block(encoders, presets, crfs) -> np.ndarray:
    """train_fr_regressor_v2.py:_row_to_features: one-hot, preset ordinal / 9, crf / 63."""
    onehot = np.zeros((len(encoders), len(V2_VOCAB)))
    for row, enc in enumerate(encoders):
        onehot[row, V2_VOCAB.index(V2_SLOT[enc])] = 1.0
    preset = [V2_ORDINAL[(e, p)] / 9 for e, p in zip(encoders, presets)]
    return np.column_stack([onehot, preset, np.asarray(crfs, dtype=np.float64) / 63])


def _forward(x_cache: np.ndarray, names=FEATURE_NAMES, encoders=None, cqs=None, block=None, seed: int = 9):
    """The fork's recipe, float64: features by name, standardised; codec block; the MLP."""
    w1, b1, w2, b2, wc = _weights(seed)
    canonical = [n.removeprefix("integer_") for n in names]
    x = x_cache.astype(np.float64)[:, [canonical.index(n.removeprefix("integer_")) for n in ORDER]]
    x = (x - np.array(MEAN)) / np.array(STD)
    z = x @ w1 + b1
    if encoders is not None:
        block = _minmax_block(encoders, cqs, VOCAB, VOCAB.index("unknown"), *CQ_RANGE)
    if block is not None:
        z = z + block @ wc[:block.shape[1]]
    return (np.maximum(z, 0) @ w2 + b2).reshape(-1)


def test_standardised_sidecar_model_scored_as_the_fork_feeds_it(gate):
    _save(gate.baseline)
    gate.baseline.with_name(gate.baseline.name + ".data").unlink()
    _sidecar(gate.baseline)
    run = gate.run()
    assert run.outcomes[NODE] in ("PASSED", "FAILED"), run.output  # scored (bounds may fail the made-up model)
    block = run.report["baselines"][BASELINE_TAG]
    for source in SOURCES:
        x, y = gate.xy(source)
        assert_close(block["per_clip"][source], independent_metrics(_forward(x), y), tol=1e-4)
    x, y = gate.all_xy()
    assert_close(block["all_clips_concat"], independent_metrics(_forward(x), y), tol=1e-4)
    # the raw, position-ordered feed (the old behaviour) gives other numbers
    raw = (np.maximum(x @ W1 + B1, 0) @ W2 + B2).reshape(-1)
    assert abs(independent_metrics(raw, y)["rmse"] - block["all_clips_concat"]["rmse"]) > 1


def test_codec_model_inputs_built_from_encoder_and_cq(tmp_path):
    _save(tmp_path / "fr_v2.onnx", codec_width=len(VOCAB) + 2)
    _codec_sidecar(tmp_path / "fr_v2.onnx")
    model = load_model(tmp_path / "fr_v2.onnx")
    x = _frames()
    names = ["integer_" + n for n in reversed(FEATURE_NAMES)]  # another order and spelling
    x_named = x[:, ::-1]
    encoders = (["libx264", "libx265", "libsvtav1", "h264_nvenc"] * 10)  # h264_nvenc: the unknown slot
    cqs = np.linspace(19, 37, len(x))
    got = model.predict_data(_source(x_named, names, encoder=encoders, cq=cqs))
    expected = _forward(x_named, names, encoders, cqs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # the codec block matters: another encoder / cq gives other predictions
    other = model.predict_data(_source(x_named, names, codec=["libx265"] * len(x), cq=cqs[::-1]))
    assert np.abs(other - got).max() > 0.1
    np.testing.assert_allclose(other, _forward(x_named, names, ["libx265"] * len(x), cqs[::-1]), rtol=1e-4, atol=1e-3)


def test_v2_recipe_preset_ordinal_and_crf_over_63(tmp_path):
    """train_fr_regressor_v2.py's sidecar (no corpus): aliases, the preset column, crf / 63, crf before cq."""
    model = load_model(_v2_sidecar(_save(tmp_path / "fr_regressor_v2.onnx", codec_width=len(V2_VOCAB) + 2))
                       .with_suffix(".onnx"))
    assert model.sidecar.recipe.script == "train_fr_regressor_v2.py:_row_to_features"
    x = _frames(8)
    clips = [("libx264", "veryslow"), ("libx264", "veryfast"), (" X265 ", "slow"), ("libsvtav1", 8),
             ("libsvtav1", 13), ("h264_nvenc", "p7"), ("hevc_qsv", "fast"), ("libfoo", "medium")]
    encoders, presets = [c[0] for c in clips], np.array([c[1] for c in clips], dtype=object)
    crfs = np.arange(20, 60, 5)
    got = model.predict_data(_source(x, encoder=encoders, preset=presets, crf=crfs, cq=crfs + 7))
    np.testing.assert_allclose(got, _forward(x, block=_v2_block(encoders, presets, crfs)), rtol=1e-4, atol=1e-3)
    # without a preset column: the fork's default "medium", ordinal 5 for every encoder
    two = ["libx264", "h264_nvenc"] * 4
    got = model.predict_data(_source(x, encoder=two, cq=crfs))
    np.testing.assert_allclose(got, _forward(x, block=_v2_block(two, [None] * 8, crfs)), rtol=1e-4, atol=1e-3)


def test_v3_recipe_slot_zero_known_corpus_range_and_crf_first(tmp_path):
    """train_fr_regressor_v3.py's sidecar (corpus a path): slot-0 fallback, 19..37 by corpus_sha256, preset 0.5."""
    model = load_model(_v3_sidecar(_save(tmp_path / "fr_regressor_v3.onnx", codec_width=len(V3_VOCAB) + 2))
                       .with_suffix(".onnx"))
    x = _frames(6)
    encoders = ["libx265", "libfoo", "libsvtav1", "libaom-av1", "LIBX265", "h264_nvenc"]  # no aliasing here
    crfs, cqs = np.array([19, 22, 25, 28, 31, 37]), np.array([40, 41, 42, 43, 44, 45])
    presets = np.array(["slow"] * 6)  # not used by this recipe
    got = model.predict_data(_source(x, codec=encoders, crf=crfs, cq=cqs, preset=presets))
    expected = _forward(x, block=_minmax_block(encoders, crfs, V3_VOCAB, fallback=0))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # the ensemble recipe (corpus.cq_min / cq_max) reads cq first, the unknown slot for other encoders
    ens = load_model(_codec_sidecar(_save(tmp_path / "seed0.onnx", codec_width=len(VOCAB) + 2)).with_suffix(".onnx"))
    got = ens.predict_data(_source(x, encoder=encoders, crf=crfs, cq=cqs))
    np.testing.assert_allclose(got, _forward(x, encoders=encoders, cqs=cqs), rtol=1e-4, atol=1e-3)


def test_codec_model_refuses_non_numeric_cq(tmp_path):
    model = load_model(_codec_sidecar(_save(tmp_path / "m.onnx", codec_width=len(VOCAB) + 2)).with_suffix(".onnx"))
    with pytest.raises(LosoInputError, match="source Clip has no cq or crf column") as info:
        model.predict_data(_source(_frames(2), encoder=["libx264"] * 2, preset=["slow"] * 2))
    assert info.value.path == tmp_path / "m.json" and "a per-frame table with encoder and cq columns" in info.value.fix
    table = tmp_path / "frames.jsonl"
    for bad, says in ((np.array([19, "x"], dtype=object), "cq value 'x' (frame 1 of the source)"),
                      (np.array([19.0, np.nan]), "cq value nan (frame 1 of the source)"),
                      (np.array([None, 19], dtype=object), "cq value None (frame 0 of the source)")):
        with pytest.raises(LosoInputError) as info:
            model.predict_data(_source(_frames(2), files=(table,), encoder=["libx264"] * 2, cq=bad))
        assert info.value.path == table  # the table holds the bad value, not the sidecar
        assert info.value.problem == f"source Clip: {says} is not a finite number, and m needs each frame's cq"


def test_missing_feature_is_named(tmp_path):
    _save(tmp_path / "m.onnx")
    _sidecar(tmp_path / "m.onnx")
    model = load_model(tmp_path / "m.onnx")
    names = list(FEATURE_NAMES[:5]) + ["psnr_y"]
    table = tmp_path / "frames.jsonl"  # the file that names the features is the one named (not its folder)
    with pytest.raises(LosoInputError, match="missing feature motion2") as info:
        model.predict_data(_source(_frames(), names, files=(table,)))
    assert info.value.path == table
    # a feature missing and another held twice: both said at once
    names = ["adm2", "integer_adm2", *FEATURE_NAMES[2:]]
    with pytest.raises(LosoInputError) as info:
        model.predict_data(_source(_frames(), names, files=(table,)))
    assert info.value.problem.startswith("missing feature vif_scale0 (has: adm2, integer_adm2, ")
    assert info.value.problem.endswith("; the same feature is held more than once: adm2 and integer_adm2")


def test_codec_model_on_yuv_corpus_fails_naming_the_missing_column(gate):
    _save(gate.baseline, codec_width=len(VOCAB) + 2)
    gate.baseline.with_name(gate.baseline.name + ".data").unlink()
    sidecar = _codec_sidecar(gate.baseline)
    run = gate.run()
    assert run.outcomes[NODE] == "FAILED"
    text = run.failure_text(NODE)
    assert str(sidecar) in text and "has no encoder or codec column" in text
    # said once for the first source, the others named; the fix names both columns the model needs
    assert text.count("has no encoder or codec column") == 1 and text.count("fix:") == 1
    assert f"the same for {len(SOURCES) - 1} more sources: {', '.join(sorted(SOURCES)[1:])}" in text
    assert "score it on a per-frame table with encoder and cq columns" in text
    assert "Traceback" not in text
    assert run.outcomes["loso::fold[linear-Src0000]"] == "PASSED"  # only the affected test fails
    assert run.report is not None


@pytest.mark.parametrize(
    ("codec", "changes", "says"),
    [
        (False, {"feature_order": ORDER[:5], "feature_mean": MEAN[:5], "feature_std": STD[:5]},
         "feature_order has 5 entries but the model's input features is [batch, 6]"),
        (False, {"input_names": ["x"]}, "input_names ['x'] disagree with the model's inputs ['features']"),
        (False, {"feature_order": [ORDER[0], "integer_" + ORDER[0], *ORDER[2:]]}, f"names {ORDER[0]} twice"),
        (False, {"sha256": "0" * 64}, "does not match m.onnx"),
        (False, {"feature_std": STD[:3]}, "feature_std must be 6 finite numbers"),
        (False, {"feature_std": None}, "has feature_mean or feature_std but lacks 'feature_std'"),
        (False, {"feature_std": [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]}, "feature_std has a zero"),
        (True, {"encoder_vocab": VOCAB + ["av1_qsv"], "codec_block_layout": _layout(VOCAB + ["av1_qsv"])},
         "codec_block_layout has 7 entries but the model's input codec is [batch, 6]"),
        (True, {"input_names": ["codec", "features", "extra"]}, "disagree with the model's inputs"),
        (True, {"encoder_vocab": None}, "lacks 'encoder_vocab'"),
        (True, {"codec_block_layout": None}, "lacks 'codec_block_layout'"),
        (True, {"corpus": {"cq_min": 19, "cq_max": "high"}}, "corpus.cq_min / corpus.cq_max must both be numbers"),
        (True, {"corpus": {"path": "x.jsonl"}}, "matches no known fork recipe (encoder_vocab_version 2, corpus dict)"),
        (True, {"corpus": "runs/phase_a/x.jsonl"}, "matches no known fork recipe (encoder_vocab_version 2, corpus str)"),
        (True, {"corpus": None, "encoder_vocab": VOCAB[:3] + ["x"], "codec_block_layout": _layout(VOCAB[:3] + ["x"])},
         'train_fr_regressor_v2.py-style sidecar whose encoder_vocab has no "unknown" slot'),
        (True, {"corpus": None, "encoder_vocab_version": 7}, "matches no known fork recipe (encoder_vocab_version 7"),
        (True, {"corpus": "runs/x.jsonl", "encoder_vocab_version": 3, "corpus_sha256": "ab" * 32},
         "does not record its training corpus's cq range, and its corpus_sha256 " + "ab" * 32),
        (True, {"codec_block_layout": ["preset_norm", "crf_norm"]}, "is not the one-hot of encoder_vocab"),
    ],
)
def test_bad_sidecar_named_with_fix(tmp_path, codec, changes, says):
    model = _save(tmp_path / "m.onnx", codec_width=len(VOCAB) + 2 if codec else None)
    sidecar = (_codec_sidecar if codec else _sidecar)(model, **changes)
    with pytest.raises(LosoInputError) as info:
        load_model(model)
    assert info.value.path == sidecar and says in info.value.problem and info.value.fix


def test_sidecar_not_json_fails_only_its_test(gate):
    gate.baseline.with_suffix(".json").write_text("{not json")
    run = gate.run()
    assert run.outcomes[NODE] == "FAILED"
    assert f"{gate.baseline.with_suffix('.json')}: model sidecar is not readable JSON" in run.failure_text(NODE)
    assert run.outcomes["loso::fold[mlp_small-Src0001]"] == "PASSED"


def test_two_inputs_without_sidecar_name_the_sidecar(tmp_path):
    model = _save(tmp_path / "m.onnx", codec_width=3)
    with pytest.raises(LosoInputError, match="expected one input") as info:
        load_model(model)
    assert "m.json" in info.value.fix


def test_first_generation_model_picks_its_features_by_name(gate):
    """A cache listing the six features in another order (libvmaf's spelling) gives the same numbers."""
    for path in sorted(gate.cache_dir.glob("*/*.json")):
        payload = json.loads(path.read_text())
        features = payload["features"]
        features["feature_names"] = ["integer_" + n for n in reversed(features["feature_names"])]
        features["per_frame"] = [row[::-1] for row in features["per_frame"]]
        path.write_text(json.dumps(payload))
    run = gate.run()
    block = run.report["baselines"][BASELINE_TAG]
    x, y = gate.all_xy()
    assert_close(block["all_clips_concat"], independent_metrics(gate.baseline_model.predict(x), y))
    x, y = gate.xy("Src0001")
    fold = run.report["archs"]["linear"]["per_fold"]["Src0001"]
    assert_close(fold, independent_metrics(gate.folds["linear"]["Src0001"].predict(x), y))


# -- named baselines: --loso-baseline NAME=PATH, ini loso_baseline lines ----------------------------

def test_named_baselines_on_the_command_line(template_gate):
    gate = template_gate
    copy = gate.root / "other" / gate.baseline.name
    shutil.copytree(gate.baseline.parent, copy.parent)
    run = gate.run(f"--loso-baseline=v1_copy={copy}")  # with the bare path: stem vmaf_tiny_v1
    assert run.outcomes[NODE] == "PASSED" and run.outcomes["loso::baseline[v1_copy]"] == "PASSED", run.output
    assert run.report["baselines"]["v1_copy"]["model_path"] == str(copy)
    assert run.report["baselines"]["v1_copy"]["all_clips_concat"] == run.report["baselines"][BASELINE_TAG][
        "all_clips_concat"]  # the same model under two names, scored alike


def test_named_baselines_in_the_ini_relative_to_it(gate, monkeypatch):
    gate.pytester.makeini("[pytest]\nloso_dir = runs\ndata_root = corpus\nloso_cache = cache\n"
                          "loso_report = report\nloso_baseline =\n    v1 = base/vmaf_tiny_v1.onnx\n"
                          "    base/vmaf_tiny_v1.onnx\n")
    monkeypatch.chdir(gate.pytester.mkdir("sub"))
    run = gate.run("-p", "no:cacheprovider", "-rA", plain=True)
    outcomes = {nodeid.removeprefix("../"): outcome for nodeid, outcome in run.outcomes.items()}
    assert outcomes["loso::baseline[v1]"] == "PASSED" and outcomes[NODE] == "PASSED", run.output
    assert run.report["baselines"]["v1"]["model_path"] == str(gate.baseline)


# -- codec-aware models on a per-frame table, end to end ---------------------------------------------

# Each clip's (encoder, preset, cq), cycled over the corpus's clips in sorted order.
CLIP_CODECS = [("libx264", "veryslow", 19), (" X265 ", "slow", 37), ("libsvtav1", 8, 25), ("h264_nvenc", "p7", 31),
               ("libfoo", "medium", 28), ("hevc_qsv", "fast", 22), ("libsvtav1", 13, 34)]
LOOSE = ["--loso-min-plcc=-1", "--loso-min-srocc=-1", "--loso-max-rmse=1e9", "--loso-min-mean-plcc=-1",
         "--loso-max-mean-rmse=1e9"]


def test_codec_aware_folds_ensemble_and_baseline_on_a_table(template_gate):
    gate = template_gate
    """v2-recipe fold models, an ensemble of export_ensemble_v2_seeds.py members and a v3 baseline,
    scored on a JSONL table with encoder / preset / cq columns: every number as the fork's recipes give."""
    from loso_helpers import table_rows as _rows
    from loso_helpers import write_jsonl as _write_jsonl

    stems = [stem for source in SOURCES for stem in gate.stems(source)]
    codec = {stem: CLIP_CODECS[k % len(CLIP_CODECS)] for k, stem in enumerate(stems)}
    rows = _rows(gate)
    for row in rows:
        row["encoder"], row["preset"], row["cq"] = codec[row["dis_basename"]]
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    runs = gate.root / "codec_runs"
    for i, source in enumerate(SOURCES):
        _v2_sidecar(_save(runs / "loso_fr" / f"fold_{source}" / "fr_final.onnx", len(V2_VOCAB) + 2, seed=30 + i))
    for seed in range(3):
        _codec_sidecar(_save(gate.root / "ens" / f"fr_v2_seed{seed}.onnx", len(VOCAB) + 2, seed=40 + seed))
    v3 = _save(gate.root / "v3" / "fr_regressor_v3.onnx", len(V3_VOCAB) + 2, seed=50)
    _v3_sidecar(v3)
    run = gate.run("-p", "no:cacheprovider", "-rA", f"--loso-dir={runs}", f"--loso-table={table}",
                   f"--loso-report={gate.report_dir}", f"--loso-baseline=v3={v3}",
                   "--loso-ensemble=fr=ens/fr_v2_seed*.onnx", *LOOSE, plain=True)
    assert run.outcomes == {**{f"loso::fold[fr-{s}]": "PASSED" for s in SOURCES}, "loso::aggregate[fr]": "PASSED",
                            "loso::baseline[v3]": "PASSED", "loso::ensemble[fr]": "PASSED"}, run.output

    def frames(source):  # each frame's encoder, preset and cq, in the gate's clip order
        per_clip = [(codec[stem], len(x)) for stem, (x, _) in zip(gate.stems(source), gate.truth[source])]
        return [list(v) for v in zip(*[c for c, n in per_clip for _ in range(n)])]

    for i, source in enumerate(SOURCES):
        x, y = gate.xy(source)
        encoders, presets, cqs = frames(source)
        expected = _forward(x, block=_v2_block(encoders, presets, cqs), seed=30 + i)
        assert_close(run.report["archs"]["fr"]["per_fold"][source], independent_metrics(expected, y), tol=1e-4)
    x, y = gate.all_xy()
    encoders, presets, cqs = [sum(part, []) for part in zip(*[frames(s) for s in SOURCES])]
    members = [_forward(x, encoders=encoders, cqs=cqs, seed=40 + seed) for seed in range(3)]
    ensemble = run.report["ensembles"]["fr"]["all_clips_concat"]
    assert_close(ensemble, independent_metrics(np.mean(members, axis=0), y), tol=1e-4)
    assert ensemble["mean_sigma"] == pytest.approx(float(np.std(members, axis=0, ddof=1).mean()), rel=1e-4)
    v3_expected = _forward(x, block=_minmax_block(encoders, cqs, V3_VOCAB, fallback=0), seed=50)
    assert_close(run.report["baselines"]["v3"]["all_clips_concat"], independent_metrics(v3_expected, y), tol=1e-4)
    # the report says how each model was fed, the preset above all
    models = run.report["run_provenance"]["models"]
    feed = models[str(runs / "loso_fr" / f"fold_{SOURCES[0]}" / "fr_final.onnx")]["feed"]
    assert feed["recipe"] == "ai/scripts/train_fr_regressor_v2.py:_row_to_features"
    assert feed["crf_norm"].startswith("cq / 63 (cq read as the crf: without a crf column the trainer")
    assert feed["preset_norm"].startswith("the table's preset column")
    feed = models[str(v3)]["feed"]
    assert feed["preset_norm"] == "0.5, the recipe's constant (the table's preset column is not used by this recipe)"
    assert feed["crf_norm"].startswith("(cq - 19) / (37 - 19)") and PHASE_A_SHA in feed["crf_norm"]


def test_v2_recipe_without_a_preset_column_uses_the_fork_default_and_says_so(template_gate):
    gate = template_gate
    from loso_helpers import table_rows as _rows
    from loso_helpers import write_jsonl as _write_jsonl

    rows = _rows(gate)  # encoder libx264, cq 30 on every row, no preset column
    table = _write_jsonl(gate.root / "frames.jsonl", rows)
    model = _save(gate.root / "v2" / "fr_regressor_v2.onnx", len(V2_VOCAB) + 2, seed=60)
    _v2_sidecar(model)
    run = gate.run("-p", "no:cacheprovider", "-rA", f"--loso-dir={gate.runs}", f"--loso-table={table}",
                   f"--loso-report={gate.report_dir}", f"--loso-baseline=v2={model}", "-k", "v2", *LOOSE, plain=True)
    assert run.outcomes == {"loso::baseline[v2]": "PASSED"}, run.output
    x, y = gate.all_xy()
    expected = _forward(x, block=_v2_block(["libx264"] * len(y), [None] * len(y), [30] * len(y)), seed=60)
    assert_close(run.report["baselines"]["v2"]["all_clips_concat"], independent_metrics(expected, y), tol=1e-4)
    feed = run.report["run_provenance"]["models"][str(model)]["feed"]
    assert feed["preset_norm"] == "no preset column: the fork's default 'medium' (ordinal 5 / 9 for every encoder)"


def test_a_failure_shared_by_many_sources_is_said_once_naming_ten_of_the_rest():
    from pytest_loso.scoring import SOURCES_NAMED, sources_failed

    sources = [f"Clip{i:02d}" for i in range(13)]
    errors = [(s, f"/m.json: source {s} has no encoder column") for s in sources]
    errors.append(("Other", "/m.onnx: onnxruntime failed on Other"))
    error = sources_failed(Path("/m.onnx"), "cannot score on all sources", errors)
    lines = str(error).splitlines()
    assert lines[0] == "/m.onnx: cannot score on all sources; 14 failed:"
    assert lines[1] == "  /m.json: source Clip00 has no encoder column"
    named = ", ".join(sources[1:1 + SOURCES_NAMED])
    assert lines[2] == f"  the same for 12 more sources: {named} and {12 - SOURCES_NAMED} more"
    assert lines[3:] == ["  /m.onnx: onnxruntime failed on Other"]
