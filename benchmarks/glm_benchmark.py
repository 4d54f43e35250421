"""Throughput and biobank-scale benchmark of the lesion GLM engine (`neurocomp.lesions.glm`).

Prints, in one run:
1. throughput (voxels/second/core) of our engine vs a statsmodels per-voxel loop on the same data (ML), and of MeanBR;
2. a biobank-sized run (default with --ukb: 13,680 subjects x 72,603 voxels x 6 covariates): MeanBR and ML wall time,
   peak RSS, iterations, share of voxels with infinite ML estimates per covariate.

    python benchmarks/glm_benchmark.py                 # quick: 13,680 subjects x 2,000 voxels
    python benchmarks/glm_benchmark.py --ukb           # the UK Biobank size (needs ~2 GB for Y, minutes)
    python benchmarks/glm_benchmark.py --subjects 5000 --voxels 20000

Numbers are ratios against a peer measured in the same run; on a shared machine absolute times vary with contention.
"""
import argparse, os, resource, time
import numpy as np


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ukb", action="store_true", help="UK Biobank size: 13,680 subjects x 72,603 voxels")
    ap.add_argument("--subjects", type=int, default=13680)
    ap.add_argument("--voxels", type=int, default=2000)
    ap.add_argument("--peer-voxels", type=int, default=120, help="voxels fitted by the statsmodels loop")
    ap.add_argument("--jobs", type=int, default=None, help="threads fitting voxel blocks (default: all cores)")
    ap.add_argument("--throughput-subjects", default="1000,13680",
                    help="subject counts of the per-core throughput comparison (1,000: the authors' simulations)")
    ap.add_argument("--block-size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="meanbr,ml", help="methods for the whole-problem run")
    args = ap.parse_args()
    if args.ukb: args.subjects, args.voxels = 13680, 72603
    from neurocomp.lesions.glm import fit_voxelwise, _available_cores
    cores = args.jobs or _available_cores()
    from neurocomp.lesions.application import biobank_sized_problem, throughput_per_core, FORMULA
    from neurocomp.lesions.mapping import design_matrix

    t0 = time.perf_counter()
    Y, covariates, _ = biobank_sized_problem(args.subjects, args.voxels, seed=args.seed)
    X = design_matrix(covariates, FORMULA)
    names, X = list(X.columns), X.to_numpy()
    print(f"data: {Y.shape[0]} subjects x {Y.shape[1]} voxels x {X.shape[1]} covariates {names}, "
          f"mean incidence {Y.mean():.4f}, generated in {time.perf_counter() - t0:.1f}s; block threads {cores}, "
          f"load average {os.getloadavg()[0]:.1f}")
    # 1. throughput vs statsmodels, on the same kind of data, one core each
    for n in (int(k) for k in args.throughput_subjects.split(",")):
        Yt, cov_t, _ = biobank_sized_problem(n, 2000, seed=args.seed)
        speed = throughput_per_core(Yt, design_matrix(cov_t, FORMULA).to_numpy(), peer_voxels=args.peer_voxels,
                                    block_size=args.block_size)
        peer_rate, ml_rate, br_rate = speed.voxels_per_s_per_core
        print(f"throughput at {n} subjects (voxels/s/core): statsmodels ML loop {peer_rate:.1f}; ours ML {ml_rate:.0f} "
              f"({ml_rate / peer_rate:.0f}x per core); ours MeanBR {br_rate:.0f} ({br_rate / peer_rate:.0f}x per core vs "
              f"the statsmodels ML loop, which has no MeanBR); mean iterations ML {speed.mean_iterations[1]:.1f}, "
              f"MeanBR {speed.mean_iterations[2]:.1f}")

    # 2. the whole problem
    rows = []
    for method in args.methods.split(","):
        t = time.perf_counter()
        res = fit_voxelwise(Y, X, method=method, names=names, block_size=args.block_size, n_jobs=cores)
        wall = time.perf_counter() - t
        rows.append((method, wall, res))
        print(f"{method:>6}: {Y.shape[1]} voxels in {wall:.1f}s wall on {cores} threads "
              f"({Y.shape[1] / wall:.0f} voxels/s), iterations mean {res.n_iter.mean():.1f} max {res.n_iter.max()}, "
              f"converged {res.converged.mean():.4f}, peak RSS so far {peak_rss_gb():.2f} GB")
    fits = {method: (wall, res) for method, wall, res in rows}
    k = names.index("bp")
    if "ml" in fits:
        ml = fits["ml"][1]
        shares = ", ".join(f"{n} {100 * s:.1f}%" for n, s in zip(names, ml.infinite.mean(0)))
        print(f"infinite ML estimates (separation) per covariate: {shares}; any: {100 * ml.infinite.any(1).mean():.1f}%")
        print(f"|z_bp| > 1.96 ML: {int((np.abs(np.nan_to_num(ml.z[:, k])) > 1.96).sum())}")
    if "meanbr" in fits:
        print(f"|z_bp| > 1.96 MeanBR: {int((np.abs(fits['meanbr'][1].z[:, k]) > 1.96).sum())}; MeanBR wall "
              f"{fits['meanbr'][0]:.1f}s (goal <= 300 s on 2 cores at UK Biobank size)")
    print(f"peak RSS {peak_rss_gb():.2f} GB (goal <= 8 GB at UK Biobank size)")


if __name__ == "__main__":
    main()
