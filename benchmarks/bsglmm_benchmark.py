"""BSGLMM Gibbs sampler speed at the Kindalova (2021) study size: N* = 250 subjects, ~23,000 voxels, P = 2.

Prints iterations/s of the numba sweep (the default CPU path) and of a peer measured in the same run (the same Gibbs
sweep written as plain vectorised numpy/scipy: inverse-CDF truncated normals over the N x M/2 colour block and closed-form
2x2 solves), their ratio, and the bulk ESS of every voxel's age coefficient and ESS/s from a longer chain.
Goals: issue 5 >= 25 it/s on 2 cores and min ESS >= 400 within 10 minutes; issue 15 >= 50 it/s. The machine may be shared:
compare ratios, and the CPU-time cost per subject-voxel (printed with --cpu-time).

    python benchmarks/bsglmm_benchmark.py [--n-samples 12000 --burn-in 1000 --thin 10 --peer-iterations 5]
"""
import argparse, os, time
import numpy as np
from scipy import special


def numpy_peer_sweep(Y, X, coef, neighbours, n_nb, colours, precision, rng):
    "The same Gibbs sweep, vectorised numpy/scipy (the peer): Z by inverse CDF, then b(v) per colour."
    XtX = X.T @ X
    pad = np.vstack([coef, np.zeros((1, coef.shape[1]))])
    for vox in colours:
        mu = X @ coef[vox].T                                           # (N, m)
        s = np.where(Y[:, vox] == 1, 1.0, -1.0)
        u = rng.random(mu.shape)
        e = special.ndtri(np.maximum(u * special.ndtr(s * mu), 1e-300))
        z = mu - s * e
        rhs = (X.T @ z).T + pad[neighbours[vox]].sum(1) @ precision
        Q = XtX[None] + n_nb[vox, None, None] * precision[None]
        L = np.linalg.cholesky(Q)
        w = np.linalg.solve(L, rhs[..., None]) + rng.standard_normal((len(vox), 2, 1))
        new = np.linalg.solve(np.swapaxes(L, 1, 2), w)[..., 0]
        coef[vox] = new; pad[vox] = new
    return coef


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-samples", type=int, default=12000)
    ap.add_argument("--burn-in", type=int, default=1000)
    ap.add_argument("--thin", type=int, default=10)
    ap.add_argument("--peer-iterations", type=int, default=5)
    ap.add_argument("--speed-iterations", type=int, default=200)
    ap.add_argument("--skip-chain", action="store_true", help="only the it/s comparison")
    ap.add_argument("--cpu-time", action="store_true", help="also the CPU time per subject-voxel of one serial colour sweep")
    ap.add_argument("--subjects", type=int, default=250, help="N* (the paper: 250 and 1,000)")
    ap.add_argument("--voxels", type=int, default=23000, help="lattice voxels (the analysis mask: ~23,000)")
    a = ap.parse_args()
    import numba
    from neurocomp.lesions.bsglmm import fit_bsglmm, build_lattice, synthetic_lattice_problem
    Y, X, coords, truth = synthetic_lattice_problem(a.subjects, a.voxels)
    N, M = Y.shape
    print(f"problem: N={N} subjects, M={M} voxels, P={X.shape[1]}, lesion rate {Y.mean():.3f}; "
          f"numba threads {numba.get_num_threads()}, cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")

    # compile both the serial and the parallel kernels before timing (numba caches them on disk)
    fit_bsglmm(Y[:, :500], X, coords[:500], n_samples=2, burn_in=0, progress=False, store_draws=False, n_deviance=1)
    fit_bsglmm(Y, X, coords, n_samples=2, burn_in=0, progress=False, store_draws=False, n_deviance=1)
    short = fit_bsglmm(Y, X, coords, n_samples=a.speed_iterations, burn_in=0, progress=False, store_draws=False, n_deviance=1)
    ours = short.iterations_per_second

    lat = build_lattice(coords)
    nb = lat.neighbours.copy(); nb[nb < 0] = M
    colours = [np.flatnonzero(lat.colour == c) for c in (0, 1)]
    rng = np.random.default_rng(0); coef = np.zeros((M, 2)); prec = np.eye(2) * 10
    t = time.perf_counter()
    for _ in range(a.peer_iterations): numpy_peer_sweep(Y, X, coef, nb, lat.n_neighbours, colours, prec, rng)
    peer = a.peer_iterations / (time.perf_counter() - t)
    print(f"numba Gibbs sweep: {ours:.2f} it/s | numpy vectorised peer: {peer:.2f} it/s | ratio {ours / peer:.1f}x")
    if a.cpu_time:  # CPU time of one thread: less sensitive to other processes than wall-clock rates
        from neurocomp.lesions.bsglmm import _sweep_serial, pack_masks
        import numba as nb
        XT = np.ascontiguousarray(X.T); packed = pack_masks(Y); key = np.uint64(1); z_sum = np.zeros(M)
        XtX = X.T @ X; scratch = np.zeros((M, 2)); col = colours[0].astype(np.int64)
        best = float("inf")
        for r in range(5):
            coef = truth.copy(); t = time.process_time()
            _sweep_serial(packed, XT, coef, lat.neighbours, lat.n_neighbours, col, prec, XtX, np.zeros(M), key, r, z_sum, 1)
            best = min(best, time.process_time() - t)
        print(f"CPU time of one thread: {best / (len(col) * N) * 1e9:.2f} ns per subject-voxel (best of 5)")
    print(f"paper (K80 GPU, reference CUDA): ~104 it/s; goals on 2 CPU cores: 25 it/s (issue 5), 50 it/s (issue 15)")
    if a.skip_chain: return

    t = time.perf_counter()
    fit = fit_bsglmm(Y, X, coords, n_samples=a.n_samples, burn_in=a.burn_in, thin=a.thin, seed=1, progress=False)
    wall = time.perf_counter() - t
    ess = fit.diagnostics["x1"]["ess_bulk"]; rhat = fit.diagnostics["x1"]["rhat"]
    print(f"chain: {a.burn_in}+{a.n_samples} iterations in {wall:.0f} s ({fit.iterations_per_second:.2f} it/s); "
          f"age coefficient bulk ESS (stored every {a.thin}): min {ess.min():.0f}, median {np.median(ess):.0f}; "
          f"max split-Rhat {np.nanmax(rhat):.3f}")
    print(f"ESS/s (min over voxels, whole run incl. burn-in): {ess.min() / wall:.2f}; "
          f"voxels with ESS >= 400: {(ess >= 400).mean():.1%}; time to min ESS 400 (extrapolated): "
          f"{400 / max(ess.min(), 1e-9) * wall:.0f} s")
    rmse = np.sqrt(np.mean((fit.coef - truth) ** 2, 0))
    print(f"RMSE vs planted maps: intercept {rmse[0]:.3f}, age {rmse[1]:.3f}")


if __name__ == "__main__":
    main()
