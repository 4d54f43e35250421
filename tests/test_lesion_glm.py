"""Lesion GLM engine (`neurocomp.lesions.glm`): the authors' brglm2 MeanBR maps, statsmodels ML, dask."""
import time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import pandas as pd
import pytest
import nibabel as nib
import statsmodels.api as sm
from neurocomp.lesions.glm import fit_voxelwise, fit_glm


def _load_kindalova(root):
    "Lesion matrix (subjects x non-zero-incidence voxels, uint8), design, reference maps at those voxels."
    sim = root / "data" / "simulated_data"
    table = pd.read_csv(sim / "GLM_sample1000.dat", sep=r"\s+")
    first = nib.load(sim / table.file_name[0])
    shape = first.shape

    def read(name):
        img = nib.load(sim / name)
        assert img.shape == shape and np.allclose(img.affine, first.affine)
        return np.asarray(img.dataobj, dtype=np.float32).ravel() > 0  # bool, one mask at a time

    with ThreadPoolExecutor(4) as pool:  # gzip inflation releases the GIL
        masks = np.stack(list(pool.map(read, table.file_name)))
    fitted = np.flatnonzero(masks.any(0))
    Y = np.ascontiguousarray(masks[:, fitted]).view(np.uint8)
    X = np.column_stack([np.ones(len(table)), table.age.to_numpy()])
    ref = {}
    for kind in ("coef", "stderr", "zscore"):
        ref[kind] = np.column_stack([
            np.asarray(nib.load(root / "results" / "MeanBR" / f"{kind}_{term}_nvars_1_method_2.nii.gz").dataobj).ravel()[fitted]
            for term in ("(Intercept)", "age")])
    reference_fitted = np.flatnonzero(np.asarray(
        nib.load(root / "results" / "MeanBR" / "coef_(Intercept)_nvars_1_method_2.nii.gz").dataobj).ravel())
    return Y, X, ref, fitted, reference_fitted


@pytest.fixture(scope="module")
def kindalova_fit(kindalova2021):
    Y, X, ref, fitted, reference_fitted = _load_kindalova(kindalova2021)
    start = time.perf_counter()
    result = fit_voxelwise(Y, X, method="meanbr", link="probit", epsilon=1e-5, maxit=10000, slowit=0.5,
                           names=["(Intercept)", "age"])
    print(f"MeanBR fit of {Y.shape[1]} voxels x {Y.shape[0]} subjects: {time.perf_counter() - start:.1f}s")
    return Y, X, ref, fitted, reference_fitted, result


def test_meanbr_matches_brglm2_reference(kindalova_fit):
    "THE reference test: the authors' brglm2 MeanBR maps, every voxel with non-zero incidence, to 1e-4."
    Y, X, ref, fitted, reference_fitted, result = kindalova_fit
    assert np.array_equal(fitted, reference_fitted)  # same voxel set: non-zero incidence
    assert Y.shape == (1000, 40399)
    assert result.converged.all()
    for ours, theirs in ((result.coef, ref["coef"]), (result.se, ref["stderr"]), (result.z, ref["zscore"])):
        assert np.isfinite(ours).all()
        assert np.max(np.abs(ours - theirs)) <= 1e-4
    # the degenerate voxels (one or two lesions in 1,000) are included and match too: intercepts near -100
    degenerate = Y.sum(0) <= 2
    assert degenerate.sum() > 100 and result.coef[degenerate, 0].min() < -50
    assert np.max(np.abs(result.coef[degenerate] - ref["coef"][degenerate])) <= 1e-4


def _separated(y, X):
    "Konis's linear program: is there d != 0 with (2y-1) * X d >= 0 for all subjects (quasi-separation)?"
    from scipy.optimize import linprog
    A = (2.0 * y - 1.0)[:, None] * X
    res = linprog(-A.sum(0), A_ub=-A, b_ub=np.zeros(len(y)), bounds=[(-1, 1)] * X.shape[1], method="highs")
    return res.status == 0 and -res.fun > 1e-7


def test_ml_matches_statsmodels_and_flags_separation(kindalova_fit):
    "statsmodels GLM Binomial(Probit) is the ML peer wherever the MLE exists; separation (by LP) is flagged infinite."
    Y, X, ref, fitted, reference_fitted, _ = kindalova_fit
    incidence = Y.sum(0)
    rng = np.random.default_rng(0)
    common = np.sort(rng.choice(np.flatnonzero(incidence >= 20), 40, replace=False))
    rare = np.flatnonzero(incidence <= 3)
    age = X[:, 1]
    # cheap 1-D screen for separation in age (lesions only at the extremes), confirmed below by the exact LP
    extreme = [j for j in rare if age[Y[:, j] == 1].min() >= age[Y[:, j] == 0].max()
               or age[Y[:, j] == 1].max() <= age[Y[:, j] == 0].min()]
    assert len(extreme) >= 3
    pick = np.r_[common, extreme[:10], rng.choice(rare, 30, replace=False)]
    separated = np.array([_separated(Y[:, j], X) for j in pick])
    assert separated.sum() >= 3 and not separated[:40].any()
    result = fit_voxelwise(Y[:, pick], X, method="ml")
    np.testing.assert_array_equal(result.infinite.any(axis=1), separated)
    assert np.isinf(result.coef[result.infinite]).all() and np.isnan(result.z[result.infinite]).all()
    for j in np.flatnonzero(~separated):
        peer = sm.GLM(Y[:, pick[j]], X, family=sm.families.Binomial(link=sm.families.links.Probit())).fit(tol=1e-12)
        # rare voxels have flat likelihoods (SEs of 10-100): compare on the scale of the standard error
        np.testing.assert_allclose(result.coef[j], peer.params, atol=1e-5 + 1e-4 * peer.bse.max())
        np.testing.assert_allclose(result.se[j], peer.bse, rtol=1e-4)


def _toy(seed=0, n=300, v=150):
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, n).astype(float)
    X = np.column_stack([np.ones(n), rng.normal(size=n), sex, rng.normal(size=n)])
    eta = -2.0 + X[:, 1:] @ np.array([0.4, 0.3, -0.2]) + rng.normal(0, 0.5, size=(v, 1)) - rng.exponential(1.0, (v, 1))
    Y = (rng.random((v, n)) < __import__("scipy").stats.norm.cdf(eta)).T.astype(np.uint8)
    return Y, X


def test_dask_local_cluster_identical_to_in_process():
    "Voxel blocks on a two-process local dask cluster give bit-identical results."
    distributed = pytest.importorskip("dask.distributed")
    Y, X = _toy()
    local = fit_voxelwise(Y, X, block_size=40)
    local_ml = fit_voxelwise(Y, X, method="ml", block_size=40)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = fit_voxelwise(Y, X, block_size=40, scheduler=client)
        remote_ml = fit_voxelwise(Y, X, method="ml", block_size=40, scheduler=cluster.scheduler_address)
    for a, b in ((local, remote), (local_ml, remote_ml)):
        for key in ("coef", "se", "z", "converged", "n_iter", "deviance"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    np.testing.assert_array_equal(local_ml.infinite, remote_ml.infinite)


def test_logit_meanbr_is_firth_and_input_errors():
    Y, X = _toy(1, v=20)
    res = fit_voxelwise(Y, X, link="logit")
    for j in range(3):  # one model at a time gives the same numbers as the voxel-wise fit
        one = fit_glm(Y[:, j], X, link="logit")
        # to rounding: BLAS and SIMD kernels sum in an order that depends on how many voxels share a product
        np.testing.assert_allclose(one.coef, res.coef[j], rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="binary"):
        fit_voxelwise(Y * 2, X)
    with pytest.raises(ValueError, match="rank deficient"):
        fit_voxelwise(Y, np.column_stack([X, X[:, 1]]))
    with pytest.raises(ValueError, match="subject counts"):
        fit_voxelwise(Y[1:], X)
