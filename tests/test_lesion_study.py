"Lesion studies: resume after interruption or a kill, corrupted files, Dask vs local, pluggable methods, the application study on a BIDS folder, and the accuracy metrics on toy inputs."
import os, signal, subprocess, sys, textwrap, time
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from neurocomp.lesions import study as study_mod
from neurocomp.lesions.study import (study_config, run_study, study_tasks, repetition_path, read_repetition, MethodFit,
                                     MethodSpec, METHODS, RepetitionFileError, SimulationResults, ApplicationResults)
from neurocomp.lesions.metrics import (accuracy_by_bin, dice_top, false_positive_rate_by_bin, mask_summary, expected_reference_z)

SMALL = dict(reference="synthetic", z_range=(46, 48), n_subjects=(120,), repetitions=3, null_n_subjects=(120,),
             null_repetitions=1, m_star=(50,), methods=("ML", "MeanBR"))


@pytest.fixture
def small_config(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path / "cache"))
    return study_config("quick", **SMALL)


def _same(a, b):
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _finished(folder):
    "Repetition files (not the hidden temporary files that atomic writes use)."
    return sorted(f for f in folder.glob("*.npz") if not f.name.startswith("."))


def _files(folder):
    return {f.name: read_repetition(f) for f in _finished(folder)}


def test_interrupted_study_resumes(small_config, monkeypatch):
    calls = {"n": 0}
    real = study_mod.run_repetition
    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3: raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)
    monkeypatch.setattr(study_mod, "run_repetition", crash_on_third)
    with pytest.raises(KeyboardInterrupt): run_study(None, small_config, progress=False)
    monkeypatch.setattr(study_mod, "run_repetition", real)
    results = run_study(None, small_config, progress=False)
    out = results.output_dir
    assert len(_finished(out)) == len(study_tasks(small_config)) == 4 and not list(out.glob(".*tmp*"))
    assert {"ML", "MeanBR"} <= set(results.accuracy_table(120).columns)


def test_killed_then_corrupted_study_resumes_identically(small_config, tmp_path):
    "Fault injection: SIGKILL a running study, truncate its newest file, resume: the same files as an undisturbed run."
    clean = run_study(None, small_config, progress=False, output_dir=tmp_path / "clean")
    reference = _files(clean.output_dir)
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import time
        from neurocomp.lesions import study
        real = study.run_repetition
        def slow(*a, **k):
            out = real(*a, **k); time.sleep(30); return out  # a long repetition: the kill lands after the first file
        study.run_repetition = slow
        study.run_study(None, study.study_config("quick", **{SMALL!r}), progress=False, output_dir={str(killed)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    try:
        deadline = time.time() + 120
        while not _finished(killed) and time.time() < deadline and proc.poll() is None: time.sleep(0.2)
        assert _finished(killed), "the study never wrote a repetition"
    finally:
        proc.send_signal(signal.SIGKILL); proc.wait()
    done = sorted(_finished(killed), key=lambda f: f.stat().st_mtime)
    assert 1 <= len(done) < 4
    done[-1].write_bytes(done[-1].read_bytes()[:len(done[-1].read_bytes()) // 2])  # corrupt the last file written
    with pytest.raises(RepetitionFileError, match="corrupt or truncated"): read_repetition(done[-1])
    with pytest.warns(UserWarning, match="recomputing"):
        resumed = run_study(None, small_config, progress=False, output_dir=killed)
    again = _files(resumed.output_dir)
    assert again.keys() == reference.keys()
    for name, arrays in reference.items():
        for k, v in arrays.items(): assert _same(again[name][k], v), f"{name}:{k}"


def test_a_file_from_another_study_is_refused(small_config, tmp_path):
    other = study_config("quick", seed=99, **{**SMALL, "repetitions": 1, "null_repetitions": 0})
    first = run_study(None, other, progress=False, output_dir=tmp_path / "shared")
    assert len(_finished(first.output_dir)) == 1
    with pytest.raises(RepetitionFileError, match="another study") as e:
        run_study(None, small_config, progress=False, output_dir=tmp_path / "shared")
    assert "accuracy_N120_r00000.npz" in str(e.value)


def test_dask_and_local_runs_are_identical(small_config, tmp_path):
    distributed = pytest.importorskip("distributed")
    local = _files(run_study(None, small_config, progress=False, output_dir=tmp_path / "local").output_dir)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
         distributed.Client(cluster) as client:
        remote = run_study(None, small_config, client=client, progress=False, output_dir=tmp_path / "dask")
    theirs = _files(remote.output_dir)
    assert theirs.keys() == local.keys() and len(local) == 4
    for name, arrays in local.items():
        assert arrays.keys() == theirs[name].keys()
        for k, v in arrays.items(): assert _same(theirs[name][k], v), f"{name}:{k}"


def test_method_table_is_pluggable(small_config, monkeypatch):
    def zero_method(Y, X, coords, *, seed=0, device=None, n_jobs=1, **options):
        v = Y.shape[1]
        return MethodFit(np.zeros((v, 2)), np.ones((v, 2)), np.zeros((v, 2)), np.ones(v, bool))
    monkeypatch.setitem(METHODS, "Zero", MethodSpec(zero_method))
    config = study_config("quick", **{**SMALL, "methods": ("ML", "Zero")})
    results = run_study(None, config, progress=False)
    t = results.accuracy_table(120).set_index(["incidence_bin", "measure"])
    bias = t.xs("bias", level="measure").dropna(subset=["Zero"])
    truth = results.truth("accuracy", 1)
    assert np.allclose(bias["Zero"].to_numpy()[:1], -truth[results.incidence <= 0.01].mean(), rtol=0.1)
    with pytest.raises(ValueError, match="unknown methods"): study_config("quick", methods=("ML", "Nope"))
    with pytest.raises(ValueError, match="unknown study parameter"): study_config("quick", repetitons=3)


def test_bsglmm_runs_on_the_analysis_mask(tmp_path, monkeypatch):
    pytest.importorskip("neurocomp.lesions.bsglmm")
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path))
    config = study_config("quick", **{**SMALL, "z_range": (46, 47), "n_subjects": (80,), "repetitions": 1,
                          "null_n_subjects": (80,), "methods": ("ML", "MeanBR", "BSGLMM"),
                          "bsglmm_options": {"n_samples": 20, "burn_in": 10, "min_ess": 5, "max_samples": 40}})  # the paper profile's form
    results = run_study(None, config, progress=False)
    assert results.methods == ["ML", "MeanBR", "BSGLMM"]
    assert "BSGLMM" in results.accuracy_table(80).columns and results.accuracy_table(80)["BSGLMM"].notna().any()
    assert "BSGLMM" in results.false_positive_table(80).columns and "BSGLMM" in results.dice_table().columns
    counts = results.regressions_table().iloc[0]
    # the GLMs fit the lesioned voxels; BSGLMM the analysis mask less its separated components
    assert counts.mean_regressions < counts.BSGLMM_voxels_fitted <= counts.analysis_mask_voxels
    info = results.method_info(80).set_index("method").loc["BSGLMM"]
    assert info.lattice_voxels + info.excluded_voxels == counts.analysis_mask_voxels
    assert 20 <= info.samples <= 40 and (info.min_ess >= 5) == bool(info.ess_target_met)  # the run to an ESS target is recorded
    coefs = results.coefficients(80)
    assert (coefs[coefs.method == "BSGLMM"].status == "finite").sum() > (coefs[coefs.method == "MeanBR"].status == "finite").sum()


def test_application_study_reads_a_bids_folder(tmp_path, monkeypatch):
    "A real-data path: the phantom without its truth is just a BIDS lesion dataset; no truth, no scores."
    import shutil
    from neurocomp.lesions.application import write_lesion_phantom
    monkeypatch.setenv("NEUROCOMP_CACHE", str(tmp_path / "cache"))
    root = write_lesion_phantom(tmp_path / "bids", 150, resolution=4.0, bp_effect=0.5, seed=2)
    shutil.rmtree(root / "phantom_truth")
    config = study_config("quick", application_methods=("ML", "MeanBR"))
    results = run_study(str(root), config, progress=False, output_dir=tmp_path / "maps")
    assert isinstance(results, ApplicationResults) and results.truth is None
    numbers = results.numbers_table().set_index("method")
    assert numbers.loc["MeanBR", "infinite sex (%)"] == 0 and numbers.loc["ML", "voxels fitted"] == numbers.loc["MeanBR", "voxels fitted"]
    assert (tmp_path / "maps" / "MeanBR" / "z_bp.nii.gz").exists()
    with pytest.raises(ValueError, match="no planted truth"): results.truth_table()
    with pytest.raises(ValueError, match="'pressure' is not in the table"):
        run_study(str(root), study_config("quick", standardise=("pressure",), application_methods=("MeanBR",)), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is neither a BIDS lesion dataset .* nor a reference folder"):
        run_study(str(tmp_path / "empty"), config, progress=False)


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
