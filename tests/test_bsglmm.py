"""BSGLMM validation: the Gibbs sampler (numba and torch) against an independent importance sampler of the same
posterior with the latent Z integrated out (probit likelihood), recovery of a planted map against voxel-wise ML,
reproducible checkpoint/resume, and input errors."""
import numpy as np
import pytest
from scipy import optimize, special, stats

from neurocomp.lesions.bsglmm import fit_bsglmm

# ---------------------------------------------------------------- an independent sampler of the same model
# Shares no code with the Gibbs sampler: the marginal posterior p(b, Sigma^-1 | Y) with Z integrated out,
#   log p = sum_iv log Phi(s_iv x_i'b_v) + (M - C)/2 log|L| - 1/2 sum_{u~v} (b_u - b_v)' L (b_u - b_v) + log W(L; nu, I),
# sampled by self-normalised importance sampling from a multivariate-t fitted at the mode (Laplace approximation).
# On a 3-voxel line the posterior has 6 (Sigma fixed) or 9 (Sigma unknown) dimensions, where this is accurate to
# a known Monte Carlo error with a few hundred thousand proposals.

def _line_problem(seed=0, n=40):
    rng = np.random.default_rng(seed)
    coords = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]])
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    truth = np.array([[-0.6, 0.5], [-0.3, 0.6], [-0.8, 0.2]])
    Y = (X @ truth.T + rng.standard_normal((n, 3)) > 0).astype(np.uint8)
    return Y, X, coords

EDGES = np.array([[0, 1], [1, 2]])

def _log_post(theta, Y, X, precision, prior_df):
    "Log posterior (up to a constant) for a batch of parameter vectors theta (K, 6 [+3])."
    theta = np.atleast_2d(theta)
    K, M, P = theta.shape[0], 3, 2
    b = theta[:, :6].reshape(K, M, P)
    eta = np.einsum("np,kmp->knm", X, b)
    s = 2.0 * Y[None] - 1.0
    lp = special.log_ndtr(s * eta).sum((1, 2))
    if precision is None:  # Cholesky factor with log diagonal: Lambda = L L'
        l11, l21, l22 = np.exp(theta[:, 6]), theta[:, 7], np.exp(theta[:, 8])
        Lam = np.zeros((K, 2, 2))
        Lam[:, 0, 0] = l11 ** 2; Lam[:, 0, 1] = Lam[:, 1, 0] = l11 * l21; Lam[:, 1, 1] = l21 ** 2 + l22 ** 2
        logdet = 2 * (theta[:, 6] + theta[:, 8])
        # Wishart(nu, I) prior on Lambda, Jacobian of Lambda = L L' (2^P prod L_ii^(P-i+1)) and of the log diagonal
        lp = lp + 0.5 * (prior_df - P - 1) * logdet - 0.5 * (Lam[:, 0, 0] + Lam[:, 1, 1]) + 3 * theta[:, 6] + 2 * theta[:, 8]
    else:
        Lam = np.broadcast_to(precision, (K, 2, 2)); logdet = np.full(K, np.linalg.slogdet(precision)[1])
    d = b[:, EDGES[:, 0]] - b[:, EDGES[:, 1]]
    lp = lp + 0.5 * (M - 1) * logdet - 0.5 * np.einsum("kep,kpq,keq->k", d, Lam, d)
    return lp

def _importance_sample(Y, X, precision=None, prior_df=5.0, n=300_000, seed=1):
    dim = 6 if precision is not None else 9
    f = lambda t: -_log_post(t, Y, X, precision, prior_df)[0]
    mode = optimize.minimize(f, np.zeros(dim), method="BFGS").x
    h = 1e-4; H = np.zeros((dim, dim)); E = np.eye(dim) * h
    for a in range(dim):
        for c in range(dim):
            H[a, c] = (f(mode + E[a] + E[c]) - f(mode + E[a] - E[c]) - f(mode - E[a] + E[c]) + f(mode - E[a] - E[c])) / (4 * h * h)
    cov = np.linalg.inv((H + H.T) / 2) * 1.3
    proposal = stats.multivariate_t(loc=mode, shape=cov, df=5)
    draws = proposal.rvs(size=n, random_state=seed)
    logw = np.concatenate([_log_post(c, Y, X, precision, prior_df) for c in np.array_split(draws, 20)]) - proposal.logpdf(draws)
    w = np.exp(logw - logw.max()); w /= w.sum()
    b = draws[:, :6]
    mean = w @ b
    sd = np.sqrt(w @ (b - mean) ** 2)
    ess = 1.0 / np.sum(w ** 2)
    return mean.reshape(3, 2), sd.reshape(3, 2), ess

def _compare(fit, ref_mean, ref_sd, ref_ess, z_tol=4.0):
    ess = np.column_stack([fit.diagnostics[n]["ess_bulk"] for n in fit.covariate_names])
    mcse = np.sqrt(fit.se ** 2 / ess + ref_sd ** 2 / ref_ess)
    z_mean = (fit.coef - ref_mean) / mcse
    # sd of a sd estimate ~ sd / sqrt(2 ESS) (Gaussian approximation; generous for the slightly skewed posteriors)
    z_sd = (fit.se - ref_sd) / (ref_sd * np.sqrt(1 / (2 * ess) + 1 / (2 * ref_ess)))
    print("max |z| mean", np.abs(z_mean).max().round(2), "sd", np.abs(z_sd).max().round(2),
          "max |diff| mean", np.abs(fit.coef - ref_mean).max().round(4), "sd", np.abs(fit.se - ref_sd).max().round(4))
    assert np.all(np.abs(z_mean) < z_tol), z_mean
    assert np.all(np.abs(z_sd) < z_tol), z_sd

PRECISION = np.array([[4.0, 1.0], [1.0, 3.0]])

def test_gibbs_matches_independent_sampler_sigma_fixed():
    Y, X, coords = _line_problem()
    ref_mean, ref_sd, ref_ess = _importance_sample(Y, X, precision=PRECISION)
    assert ref_ess > 20_000
    fit = fit_bsglmm(Y, X, coords, n_samples=6000, burn_in=300, chains=2, seed=3, precision=PRECISION, progress=False)
    _compare(fit, ref_mean, ref_sd, ref_ess)

def test_gibbs_matches_independent_sampler_sigma_sampled():
    Y, X, coords = _line_problem()
    ref_mean, ref_sd, ref_ess = _importance_sample(Y, X, precision=None, prior_df=5.0)
    assert ref_ess > 5_000
    fit = fit_bsglmm(Y, X, coords, n_samples=6000, burn_in=300, chains=2, seed=4, prior_df=5.0, progress=False)
    _compare(fit, ref_mean, ref_sd, ref_ess)

def test_torch_sweep_agrees_in_distribution():
    Y, X, coords = _line_problem()
    ref_mean, ref_sd, ref_ess = _importance_sample(Y, X, precision=PRECISION)
    fit = fit_bsglmm(Y, X, coords, n_samples=2000, burn_in=200, chains=1, seed=5, precision=PRECISION,
                     device="cpu", progress=False)
    _compare(fit, ref_mean, ref_sd, ref_ess)

# ---------------------------------------------------------------- planted map, small N: BSGLMM beats voxel-wise ML

def test_recovers_planted_map_better_than_voxelwise_ml():
    rng = np.random.default_rng(11)
    coords = np.argwhere(np.ones((12, 12, 2), bool)); n = 60
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    r2 = (coords[:, 0] - 6) ** 2 + (coords[:, 1] - 6) ** 2
    truth = np.column_stack([-1.5 + 0.7 * np.exp(-r2 / 20), 0.6 * np.exp(-r2 / 20)])
    Y = (X @ truth.T + rng.standard_normal((n, len(coords))) > 0).astype(np.uint8)
    fit = fit_bsglmm(Y, X, coords, n_samples=400, burn_in=200, seed=0, progress=False)
    try:
        from neurocomp.lesions.glm import fit_voxelwise
        ml = fit_voxelwise(Y, X, method="ml").coef
    except ImportError:  # the GLM module is optional here: statsmodels per voxel
        import statsmodels.api as sm
        ml = np.array([sm.Probit(Y[:, v], X).fit(disp=0).params for v in range(Y.shape[1])])
    finite = np.isfinite(ml).all(1)
    assert finite.mean() > 0.8
    mse_ml = np.mean((ml[finite, 1] - truth[finite, 1]) ** 2)
    mse_bs = np.mean((fit.coef[finite, 1] - truth[finite, 1]) ** 2)
    print(f"age-coefficient MSE: BSGLMM {mse_bs:.4f}, ML {mse_ml:.4f} ({finite.sum()} voxels with finite MLE)")
    assert mse_bs < 0.5 * mse_ml

# ---------------------------------------------------------------- checkpoint / resume, reproducibility, outputs

def test_checkpoint_resume_gives_identical_chains(tmp_path):
    Y, X, coords = _line_problem(seed=2)
    kw = dict(n_samples=150, burn_in=50, chains=2, seed=9, progress=False, checkpoint_every=40)
    full = fit_bsglmm(Y, X, coords, **kw)
    class Crash(Exception): pass
    def crash(chain, it, coef):
        if chain == 1 and it == 97: raise Crash
    ck = tmp_path / "chain.npz"
    with pytest.raises(Crash):
        fit_bsglmm(Y, X, coords, checkpoint=ck, callback=crash, **kw)
    assert ck.exists()
    resumed = fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)
    assert np.array_equal(resumed.draws, full.draws) and np.array_equal(resumed.coef, full.coef)
    assert np.array_equal(resumed.precision_draws, full.precision_draws) and resumed.dic == full.dic
    # a checkpoint for other data or settings is refused, a corrupt one too
    with pytest.raises(ValueError, match="different data"):
        fit_bsglmm(Y, X, coords, checkpoint=ck, **{**kw, "seed": 10})
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)

def test_wm_prior_and_nifti_output(tmp_path):
    import nibabel as nib
    rng = np.random.default_rng(4)
    coords = np.argwhere(np.ones((6, 6, 2), bool)) + 1; n = 50
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    wm = np.exp(-((coords[:, 0] - 3) ** 2) / 4.0)
    Y = (-1.0 + 1.5 * wm[None] + 0.3 * X[:, 1:2] + rng.standard_normal((n, len(coords))) > 0).astype(np.uint8)
    fit = fit_bsglmm(Y, X, coords, n_samples=200, burn_in=100, wm_prior=wm, seed=1, progress=False)
    assert fit.wm_coef_draws.shape == (1, 200) and np.isfinite(fit.wm_coef_draws).all()
    ref = nib.Nifti1Image(np.zeros((9, 9, 4), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    fit.to_nifti(tmp_path / "maps", reference=ref)
    img = nib.load(tmp_path / "maps" / "z_x1.nii.gz")
    assert np.allclose(img.affine, ref.affine) and img.get_fdata()[0, 0, 0] == 0
    assert np.allclose(img.get_fdata()[tuple(coords.T)], fit.z[:, 1], atol=1e-5)
    # the shared convention: voxel v of a mask is its v-th True voxel in C order, whatever order the fit's voxels had
    mask = np.zeros((9, 9, 4), np.uint8); mask[tuple(coords.T)] = 1
    shuffled = np.random.default_rng(0).permutation(len(coords))
    fit2 = fit_bsglmm(Y[:, shuffled], X, coords[shuffled], n_samples=20, burn_in=0, seed=1, progress=False)
    maps = fit2.to_nifti(mask_img=nib.Nifti1Image(mask, ref.affine))
    assert np.allclose(maps["coef_x1"].get_fdata()[tuple(coords[shuffled].T)], fit2.coef[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        fit.to_nifti(reference=((3, 3, 3), np.eye(4)))
    with pytest.raises(ValueError, match="voxel_coords"):
        fit.to_nifti(mask_img=nib.Nifti1Image(np.ones((9, 9, 4), np.uint8), ref.affine))

@pytest.mark.parametrize("change, message", [
    (lambda Y, X, c: (Y * 3, X, c), "binary"),
    (lambda Y, X, c: (Y, np.where(np.arange(len(X))[:, None] == 3, np.nan, X), c), "NaN"),
    (lambda Y, X, c: (Y, X[:-1], c), "rows"),
    (lambda Y, X, c: (Y, X, c[:, :2]), "voxel_coords"),
    (lambda Y, X, c: (Y, X, np.vstack([c[:1], c[:-1]])), "duplicate"),
    (lambda Y, X, c: (Y, np.column_stack([X, 2 * X[:, 1]]), c), "rank deficient"),
])
def test_bad_input_errors(change, message):
    Y, X, coords = _line_problem()
    with pytest.raises((ValueError, TypeError), match=message):
        fit_bsglmm(*change(Y, X, coords), n_samples=10, burn_in=0, progress=False)

def test_a_device_that_is_not_here_is_refused_by_name():
    "Issue 17 follow-up: device='cuda' without a GPU is a ValueError naming the device, not torch's AssertionError."
    import torch
    Y, X, coords = _line_problem()
    bad = ["gpu"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"])
    for device in bad:
        with pytest.raises(ValueError, match="device="):
            fit_bsglmm(Y, X, coords, n_samples=10, burn_in=0, progress=False, device=device)

# ---------------------------------------------------------------- run length from convergence (min_ess)

def test_min_ess_resume_after_crash_in_a_later_block(tmp_path):
    "A run to an ESS target, killed in its second block, resumes to the same blocks, draws and estimates."
    Y, X, coords = _line_problem(seed=2)
    kw = dict(n_samples=60, burn_in=20, chains=2, seed=5, progress=False, checkpoint_every=25, min_ess=120,
              max_samples=2000)
    full = fit_bsglmm(Y, X, coords, **kw)
    assert len(full.params["ess_history"]) >= 2 and full.params["ess_target_met"]
    class Crash(Exception): pass
    def crash(chain, it, coef):
        if chain == 1 and it == 20 + full.params["ess_history"][0][0] + 10: raise Crash
    ck = tmp_path / "chain.npz"
    with pytest.raises(Crash):
        fit_bsglmm(Y, X, coords, checkpoint=ck, callback=crash, **kw)
    resumed = fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)
    assert resumed.params["ess_history"] == full.params["ess_history"]
    assert np.array_equal(resumed.draws, full.draws) and np.array_equal(resumed.coef, full.coef)
    assert np.array_equal(resumed.ess_unmet, full.ess_unmet) and resumed.dic == full.dic
