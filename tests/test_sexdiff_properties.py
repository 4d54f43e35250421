"Property tests (issue 17) for the Brueggeman 2020 entry points and the shared attribution module: every generated input gives a valid result or a clear ValueError/TypeError, never a traceback from inside numpy, torch or scipy."
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from neurocomp.attribution import region_occlusion, region_scores, saliency_maps
from neurocomp.sexdiff.phantom import REGIONS, check_effects
from neurocomp.sexdiff.metrics import block_ranks, pearson_r, ranking_correlations, truth_recovery
from neurocomp.sexdiff.methods import (assign_splits, brueggeman_cnn, input_box, resample_volume, residualise_sex,
                                       volume_features, feature_columns)
from neurocomp.sexdiff.study import study_config

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])  # reproducible in CI
OK_ERRORS = (ValueError, TypeError)
finite = st.floats(-1e6, 1e6, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


def _valid_or_clear(fn):
    "Run fn: a result, or a ValueError/TypeError with a message (never another exception type)."
    try: return fn()
    except OK_ERRORS as e:
        assert str(e), "an error without a message"
        return None


@FAST
@given(sex=arrays(np.float64, st.integers(0, 40), elements=st.sampled_from([0.0, 1.0, 2.0, np.nan])),
       bv=st.lists(anything, min_size=0, max_size=40), residuals=st.sampled_from(["deviance", "response", "pearson", "raw"]),
       sd_limit=st.one_of(st.none(), st.floats(-1, 5), st.just(float("nan"))))
def test_residualise_sex(sex, bv, residuals, sd_limit):
    n = min(len(sex), len(bv))
    ph = pd.DataFrame({"31-0.0": sex[:n], "25010-2.0": bv[:n], "25009-2.0": np.asarray(bv[:n], float) * 1.3 + np.arange(n)})
    res = _valid_or_clear(lambda: residualise_sex(ph, residuals=residuals, sd_limit=sd_limit))
    if res is not None:
        assert len(res) == n and np.isfinite(res.target).all() and res.included.dtype == bool


@FAST
@given(values=arrays(np.float64, st.tuples(st.integers(0, 6), st.just(19)), elements=anything), drop=st.booleans())
def test_volume_features(values, drop):
    table = pd.DataFrame(values, columns=list(feature_columns()))
    if drop: table = table.drop(columns=table.columns[0])
    out = _valid_or_clear(lambda: volume_features(table))
    if out is not None: assert out.shape == (len(table), 19) and np.isfinite(out.to_numpy()).all()


@FAST
@given(n=st.one_of(st.integers(-5, 200), st.floats(0, 50), st.booleans()), frac=st.floats(-0.5, 1.5), folds=st.integers(0, 8))
def test_assign_splits(n, frac, folds):
    out = _valid_or_clear(lambda: assign_splits(n, frac, folds, seed=0))
    if out is not None:
        assert len(out) == n and (out == "test").sum() >= 2 and len(set(out)) == folds + 1


@FAST
@given(scores=arrays(np.float64, st.tuples(st.just(18), st.integers(0, 4)), elements=anything), missing=st.booleans())
def test_block_ranks_and_correlations(scores, missing):
    table = pd.DataFrame(scores, index=list(REGIONS), columns=[f"m{j}" for j in range(scores.shape[1])])
    if missing: table = table.drop(index="csf")
    ranks = _valid_or_clear(lambda: block_ranks(table))
    if ranks is None: return
    assert len(ranks) == 18 and ranks.iloc[:, 2:].isin(range(1, 16)).all().all()
    corr = _valid_or_clear(lambda: ranking_correlations(ranks))
    if corr is not None: assert list(corr.columns) == ["method_a", "method_b", "rho", "p"]


@FAST
@given(ranks=arrays(np.int64, (18, 3), elements=st.integers(1, 15)), d=arrays(np.float64, 18, elements=st.floats(-1, 1)))
def test_truth_recovery(ranks, d):
    table = pd.DataFrame(ranks, columns=["a", "size_only", "random_init_saliency"])
    table.insert(0, "region", list(REGIONS)); table.insert(0, "block", ["subcortical"] * 15 + ["tissue"] * 3)
    truth = pd.DataFrame({"region": list(REGIONS), "block": table.block, "d": np.abs(d), "planted": np.abs(d) > 0.5})
    summary, detail = truth_recovery(table, truth)
    assert set(summary.method) == {"a", "size_only", "random_init_saliency"}
    assert (summary.n_recovered <= summary.top_k_hits).all() and (summary.top_k_hits <= summary.n_planted).all()


@FAST
@given(effects=st.lists(st.tuples(st.sampled_from([*REGIONS, "brain"]), st.sampled_from(["volume", "intensity", "texture", "shape"]),
                                  st.one_of(st.floats(allow_nan=True), st.text(max_size=2))), max_size=4))
def test_check_effects(effects):
    out = _valid_or_clear(lambda: check_effects(effects))
    if out is not None: assert all(isinstance(d, float) and np.isfinite(d) for _, _, d in out)


@FAST
@given(key=st.sampled_from(["cnn_epochs", "tune_length", "residuals", "crop", "input_shape", "sd_limit", "nonsense", "attribution_fold"]),
       value=st.one_of(st.integers(-3, 200), st.floats(allow_nan=True), st.text(max_size=6), st.tuples(st.integers(-2, 80), st.integers(-2, 80), st.integers(-2, 80))))
def test_study_config(key, value):
    config = _valid_or_clear(lambda: study_config("quick", **{key: value}))
    if config is not None: assert config[key] == value or key in ("input_shape", "attribution_fold")


@FAST
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)), out=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
       crop=st.sampled_from(["fov", "brain", "centre"]), zero=st.booleans())
def test_resample_volume(shape, out, crop, zero):
    data = np.zeros(shape, np.float32) if zero else np.random.default_rng(0).random(shape, dtype=np.float32)
    box = _valid_or_clear(lambda: input_box(data, crop))
    if box is None: return
    res, aff = resample_volume(data, out, box, 1, np.eye(4))
    assert res.shape == out and np.isfinite(res).all() and aff.shape == (4, 4)


@FAST
@given(shape=st.tuples(st.integers(-1, 20), st.integers(-1, 70), st.integers(-1, 70)), width=st.floats(-1, 0.2), init=st.sampled_from(["keras", "torch", "he"]))
def test_brueggeman_cnn_shapes(shape, width, init):
    model = _valid_or_clear(lambda: brueggeman_cnn(shape, width=width, init=init, seed=0))
    if model is not None: assert model(torch.zeros(1, 1, *shape)).shape == (1, 1)


@FAST
@given(x=arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(2, 4), st.integers(2, 4)), elements=st.floats(-10, 10, width=32)),
       poison=st.sampled_from([None, np.nan, np.inf]), normalise=st.sampled_from([True, False, "max", "minmax", "z"]))
def test_saliency_and_region_scores(x, poison, normalise):
    if poison is not None: x = x.copy(); x.flat[0] = poison
    net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(x.shape[1:])), 1))
    maps = _valid_or_clear(lambda: saliency_maps(net, x, normalise=normalise, device="cpu"))
    if maps is None: return
    assert maps.shape == x.shape and np.isfinite(maps).all()
    labels = (np.arange(np.prod(x.shape[1:])).reshape(x.shape[1:]) % 3).astype(int)
    scores = region_scores(maps, labels, {"a": 0, "b": [1, 2]}, average="voxels")
    assert np.isfinite(scores).all()


@FAST
@given(n=st.integers(1, 6), ylen=st.integers(0, 7), regions=st.sampled_from([{"a": 1}, {"a": 9}, [1, 2], {}]),
       fill=st.sampled_from([0.0, 1.0, np.nan]))
def test_region_occlusion(n, ylen, regions, fill):
    x = torch.rand(n, 1, 3, 3, 3); labels = np.zeros((3, 3, 3), int); labels[0] = 1; labels[1] = 2
    net = nn.Sequential(nn.Flatten(), nn.Linear(27, 1))
    out = _valid_or_clear(lambda: region_occlusion(net, x, np.arange(ylen, dtype=float), labels, regions,
                                                   lambda y, o: float(np.mean(o)), fill=fill, device="cpu", progress=False))
    if out is not None: assert len(out) == len(regions) and np.isfinite(out.drop_per_voxel).all()


@FAST
@given(a=st.lists(anything, max_size=6), b=st.lists(anything, max_size=6))
def test_pearson_r(a, b):
    r = _valid_or_clear(lambda: pearson_r(a, b))
    if r is not None: assert -1 <= r <= 1
