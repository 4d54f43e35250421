"Method comparison study: resume after interruption, Dask vs local, and the accuracy metrics on toy inputs."
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from neurocomp.lesions import study as study_mod
from neurocomp.lesions.study import study_config, run_study, study_tasks, repetition_path, register_method, MethodFit, METHODS
from neurocomp.lesions.metrics import (accuracy_by_bin, dice_top, false_positive_rate_by_bin, mask_summary, expected_reference_z)


@pytest.fixture
def small_config(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path))
    return study_config("quick", reference="synthetic", z_range=(46, 48), n_subjects=(120,), repetitions=3,
                        null_n_subjects=(120,), null_repetitions=1, m_star=(50,), methods=("ML", "MeanBR"))


def _arrays(path):
    with np.load(path) as d: return {k: d[k] for k in d.files}


def test_interrupted_study_resumes(small_config, monkeypatch):
    calls = {"n": 0}
    real = study_mod.run_repetition
    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3: raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)
    monkeypatch.setattr(study_mod, "run_repetition", crash_on_third)
    with pytest.raises(KeyboardInterrupt): run_study(small_config, progress=False)
    out = study_mod.study_dir(small_config)
    done = sorted(out.glob("*.npz"))
    assert len(done) == 2 and not list(out.glob(".*tmp*"))  # atomic: no half-written file left behind
    stamps = {f.name: f.stat().st_mtime_ns for f in done}
    monkeypatch.setattr(study_mod, "run_repetition", real)
    results = run_study(small_config, progress=False)
    files = sorted(out.glob("*.npz"))
    assert len(files) == len(study_tasks(small_config)) == 4
    assert all(f.stat().st_mtime_ns == stamps[f.name] for f in files if f.name in stamps)  # finished work kept
    table = results.accuracy_table(120)
    assert {"ML", "MeanBR"} <= set(table.columns)


def test_dask_and_local_runs_are_identical(small_config, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    local = {f.name: _arrays(f) for f in run_study(small_config, progress=False).out_dir.glob("*.npz")}
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path / "dask"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
         distributed.Client(cluster) as client:
        remote = run_study(small_config, client=client, progress=False)
    files = list(remote.out_dir.glob("*.npz"))
    assert len(files) == len(local) == 4
    for f in files:
        theirs = _arrays(f)
        assert theirs.keys() == local[f.name].keys()
        for k, v in local[f.name].items(): np.testing.assert_array_equal(theirs[k], v, err_msg=f"{f.name}:{k}")


def test_method_table_is_pluggable(small_config, monkeypatch):
    def zero_method(Y, X, coords, *, seed=0, **options):
        v = Y.shape[1]
        return MethodFit(np.zeros((v, 2)), np.ones((v, 2)), np.zeros((v, 2)), np.ones(v, bool))
    monkeypatch.setitem(METHODS, "Zero", study_mod.MethodSpec(zero_method))
    config = study_config("quick", **{k: small_config[k] for k in ("reference", "z_range", "n_subjects", "repetitions",
                          "null_n_subjects", "null_repetitions", "m_star")}, methods=("ML", "Zero"))
    results = run_study(config, progress=False)
    t = results.accuracy_table(120).set_index(["incidence_bin", "measure"])
    bias = t.xs("bias", level="measure").dropna()
    truth = results.truth("accuracy", 1)
    assert np.allclose(bias["Zero"].to_numpy()[:1], -truth[results.incidence <= 0.01].mean(), rtol=0.1)
    with pytest.raises(ValueError, match="unknown methods"): study_config("quick", methods=("ML", "Nope"))
    with pytest.raises(ValueError, match="unknown study parameters"): study_config("quick", repetitons=3)


def test_accuracy_metrics_on_toy_inputs():
    truth = np.array([0.5, -0.5, 1.0, 2.0]); inc = np.array([0.007, 0.008, 0.5, 0.6])
    est = np.array([[0.6, -0.4, 1.0, 2.5], [0.4, -0.8, 1.2, 1.5], [np.inf, -0.6, 1.1, 2.0]])
    valid = np.isfinite(est)
    t = accuracy_by_bin(est, truth, inc, valid).set_index("incidence_bin")
    # voxel 0: reps 1-2 only: errors +0.1, -0.1 -> bias 0, mse 0.01, pu 0.5; voxel 1: +0.1, -0.3, -0.1 -> bias -0.1
    assert np.isclose(t.loc["(0.005, 0.01]", "bias"], (0.0 + -0.1) / 2)
    assert np.isclose(t.loc["(0.005, 0.01]", "mse"], (0.01 + (0.01 + 0.09 + 0.01) / 3) / 2)
    assert np.isclose(t.loc["(0.005, 0.01]", "pu_percent"], 100 * (0.5 + 2 / 3) / 2)
    assert np.isclose(t.loc["(0.2, 1.0]", "bias"], ((0.0 + 0.2 + 0.1) / 3 + (0.5 - 0.5 + 0.0) / 3) / 2)
    assert t.loc["(0.01, 0.05]", "n_voxels"] == 0
    assert dice_top(np.array([5, 4, 3, 0, 0.]), np.array([5, 0, 3, 4, 0.]), 2) == 0.5
    f = false_positive_rate_by_bin(np.array([[3.0, 0.1, 0.0, -2.5]]), inc).set_index("incidence_bin")
    assert f.loc["(0.005, 0.01]", "fpr"] == 0.5 and f.loc["(0.2, 1.0]", "fpr"] == 0.5
    with pytest.raises(ValueError): accuracy_by_bin(est[:, :3], truth, inc)


def test_lesion_count_is_six_connected():
    rng = np.random.default_rng(1)
    m = (rng.random((30, 30, 30)) < 0.2).astype(np.uint8)
    v, c, s = mask_summary(m)
    assert v == m.sum() and c == ndimage.label(m)[1] and np.isclose(s, v / c)
    with pytest.raises(ValueError, match="binary"): mask_summary(m * 2)


def test_expected_reference_z_grows_with_sqrt_n():
    z1 = expected_reference_z(np.array([-1.0]), np.array([0.03]), (45, 80), 1000)
    z4 = expected_reference_z(np.array([-1.0]), np.array([0.03]), (45, 80), 4000)
    assert np.isclose(z4 / z1, 2.0)


def test_bsglmm_joins_the_tables_when_available(tmp_path, monkeypatch):
    pytest.importorskip("neurocomp.lesions.bsglmm")
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path))
    config = study_config("quick", reference="synthetic", z_range=(46, 47), n_subjects=(80,), repetitions=1,
                          null_n_subjects=(80,), null_repetitions=1, m_star=(20,), methods=("ML", "MeanBR", "BSGLMM"),
                          method_options={"BSGLMM": {"n_samples": 40, "burn_in": 20}})
    results = run_study(config, progress=False)
    assert results.methods == ["ML", "MeanBR", "BSGLMM"]
    table = results.accuracy_table(80)
    assert "BSGLMM" in table.columns and table["BSGLMM"].notna().any()
    assert "BSGLMM" in results.false_positive_table(80).columns and "BSGLMM" in results.dice_table().columns
