"Brueggeman 2020 (issues 12, 13): Table 1, the paper's own Fig 4 statistics, truth scoring that a size ranking cannot pass, a leak-free phantom measured from noisy images, the target, and the paper profile for one batch."
import itertools
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from neurocomp.sexdiff.phantom import (BLOCKS, FIRST_LABELS, REGIONS, SUBCORTICAL, fast_like_segmentation,
                                       first_like_segmentation, planted_truth, planted_volume_change, simulate_subject,
                                       template_anatomy, write_phantom_cohort, read_truth)
from neurocomp.sexdiff.metrics import block_ranks, paper_fig4_ranks, ranking_correlations, truth_recovery
from neurocomp.sexdiff.methods import (assign_splits, brueggeman_cnn, layer_table, residualise_sex, volume_features,
                                       feature_columns, CaretEnet)
from neurocomp.sexdiff.study import study_config, smoke_test

FIG4 = Path("/work/shared/data/brueggeman2020/fig4_ranks.csv")
# Table 1 of the paper, row by row (layer type, parameter count)
TABLE1 = [("Conv3D", 224), ("MaxPool3D", 0), ("BatchNorm", 32), ("Conv3D", 3472), ("MaxPool3D", 0), ("BatchNorm", 64),
          ("Conv3D", 13856), ("Conv3D", 55360), ("MaxPool3D", 0), ("BatchNorm", 256), ("Conv3D", 65664),
          ("Conv3D", 262400), ("MaxPool3D", 0), ("Flatten", 0), ("Dense", 14348819), ("Dense", 20)]


def test_table1_parameter_counts_need_128_cubed():
    model = brueggeman_cnn((128, 128, 128))
    table = layer_table(model, (128, 128, 128))
    assert list(zip(table.layer, table.param)) == TABLE1 and table.param.sum() == 14_750_167
    bn_buffers = sum(m.running_mean.numel() + m.running_var.numel() for m in model if isinstance(m, torch.nn.BatchNorm3d))
    assert sum(p.numel() for p in model.parameters()) + bn_buffers == 14_750_167
    # Keras initialisation: zero biases, Glorot-uniform weights
    assert all(float(m.bias.abs().sum()) == 0 for m in model if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear)))
    # the native 1 mm grid would give Dense(19) 82.8 M parameters: the 128^3 input is what Table 1 describes
    assert layer_table(brueggeman_cnn((182, 218, 182)), (182, 218, 182)).param.iloc[14] > 80e6


def test_ranking_correlations_reproduce_the_papers_numbers():
    ranks = pd.read_csv(FIG4) if FIG4.exists() else paper_fig4_ranks()
    pd.testing.assert_frame_equal(ranks, paper_fig4_ranks())
    corr = ranking_correlations(ranks)
    assert list(corr.columns) == ["method_a", "method_b", "rho", "p"] and len(corr) == 10
    c = corr.set_index(["method_a", "method_b"])
    assert abs(c.loc[("saliency", "occlusion"), "rho"] - 0.12) < 0.005 and abs(c.loc[("saliency", "occlusion"), "p"] - 0.63) < 0.01
    for pair in itertools.combinations(["linear_regression", "elastic_net", "random_forest"], 2):
        assert c.loc[pair, "p"] <= 2.4e-5 + 5e-8, pair
    with pytest.raises(ValueError, match="block"):
        ranking_correlations(ranks.drop(columns="block"))


def test_size_only_ranking_does_not_pass_truth_recovery():
    anat = template_anatomy(4.0)
    size = pd.Series({r: float((anat.region_map == i + 1).sum()) for i, r in enumerate(REGIONS)})
    smallest = list(size[list(SUBCORTICAL)].sort_values().index[:4])
    truth = planted_truth([(r, "volume", 0.3) for r in smallest])
    scores = pd.DataFrame({"occlusion": 1 / size, "size_only": 1 / size}, index=list(REGIONS))
    summary, detail = truth_recovery(block_ranks(scores), truth)
    row = summary.set_index("method").loc["occlusion"]
    assert row.top_k_hits >= 3 and row.n_recovered == 0  # the planted regions on top (ties at their average), none recovered
    assert not detail[detail.method == "occlusion"].recovered.any()


def test_planted_volume_effects_do_not_leak():
    # the same subject as female and as male (identical random draws, no head-size difference): only the planted
    # structure may change volume; its neighbours are pushed aside, not compressed (a small fraction of the planted
    # change, from interpolation on the coarse grid: a d = 0.3 effect leaks as d < 0.1), everything else stays put
    effects = [("R_putamen", "volume", 3.0)]
    name_of = {c: n for n, c in FIRST_LABELS.items()}
    vol = lambda s: pd.Series({name_of[c]: float(v.sum()) for c, _, v in s.structures})
    changes = []
    for seed in range(3):
        f = simulate_subject(0, seed, 4.0, effects, scale_sex=0.0)
        m = simulate_subject(1, seed, 4.0, effects, scale_sex=0.0)
        changes.append(vol(m) / vol(f) - 1)
    change = pd.concat(changes, axis=1)
    planted = change.loc["R_putamen"]
    assert (planted > 0.15).all()
    others = change.drop("R_putamen").abs()
    assert (others.max() < 0.3 * planted).all(), change.round(3)
    left = [r for r in SUBCORTICAL if r.startswith("L_")]
    assert (change.loc[left].abs() < 0.01).all().all(), change.loc[left].round(4)
    leaks = planted_volume_change(4.0, 0.03)
    own = np.diag(leaks[list(SUBCORTICAL)].to_numpy())
    others = leaks[list(SUBCORTICAL)].to_numpy() - np.diag(own)
    assert np.abs(others).max() < 0.15 * own.min()


def test_volume_models_see_measured_not_generating_segmentations():
    subj = simulate_subject(1, 7, 4.0)
    fast = fast_like_segmentation(subj.image, subj.brain)
    wm, sd = fast.means[2], 0.5 * (fast.means[2] - fast.means[1])
    first = first_like_segmentation(subj.image, subj.structures, wm, sd, 4.0)
    assert not np.array_equal(first.labels, subj.first_true)
    for name, code in FIRST_LABELS.items():  # close to the anatomy, but measured
        overlap = ((first.labels == code) & (subj.first_true == code)).sum() / max((subj.first_true == code).sum(), 1)
        assert overlap > 0.5, name
    # an intensity change inside a structure moves its measured boundary (as it would move FIRST's)
    brighter = subj.image * np.where(subj.first_true == FIRST_LABELS["R_hippocampus"], 1.15, 1.0).astype(np.float32)
    first_b = first_like_segmentation(brighter, subj.structures, wm, sd, 4.0)
    assert abs(first_b.soft["R_hippocampus"] / first.soft["R_hippocampus"] - 1) > 0.01


def test_phantom_truth_in_one_unit(tmp_path):
    root = write_phantom_cohort(tmp_path / "ukb", 12, resolution=4.0, seed=1, progress=False)
    truth = read_truth(root / "phantom_truth")
    t = truth.regions.set_index("region")
    assert t.d.max() <= 0.3 + 1e-12 and t.planted.sum() == 7 and set(t.block) == set(BLOCKS)
    assert {"sex", "v_volume_R_putamen", "v_intensity_R_hippocampus", "v_texture_csf"} <= set(truth.subjects.columns)


def test_target_and_features_follow_the_authors():
    rng = np.random.default_rng(0); n = 4000
    ph = pd.DataFrame({"31-0.0": (rng.random(n) < 0.47).astype(int)})
    ph["25010-2.0"] = 1.1e6 + 1e5 * (rng.normal(size=n) + 1.2 * ph["31-0.0"])
    ph["25009-2.0"] = 1.5e6 + 0.5 * (ph["25010-2.0"] - 1.1e6) + 8e4 * rng.normal(size=n)
    res = residualise_sex(ph)
    assert 0.004 < (~res.included).mean() < 0.025  # deviance residuals: about 1% beyond |z| > 2, as the paper's 249 / 21,390
    assert (~residualise_sex(ph, residuals="pearson").included).mean() > 0.025
    with pytest.raises(ValueError, match="31-0.0"):
        residualise_sex(ph.drop(columns="31-0.0"))
    with pytest.raises(ValueError, match="residuals must be one of"):
        residualise_sex(ph, residuals="raw")
    cols = feature_columns()
    assert len(cols) == 19 and "25009-2.0" not in cols and "25010-2.0" not in cols and "25002-2.0" in cols
    splits = assign_splits(21390)
    assert (splits == "test").sum() == 2390 and ((splits == "fold5").sum() == 3800)
    x = rng.normal(size=(100, 4)); y = x @ [1, 0, -1, 0.5] + rng.normal(size=100)
    from sklearn.linear_model import LinearRegression
    assert np.allclose(CaretEnet(0.0, 1.0).fit(x, y).predict(x), LinearRegression().fit(x, y).predict(x))


def test_study_config_rejects_unknown_and_bad_values():
    assert study_config("medium")["phantom"]["n_subjects"] > study_config("quick")["phantom"]["n_subjects"]
    with pytest.raises(ValueError, match="unknown study parameter"):
        study_config("quick", epochs=3)
    with pytest.raises(ValueError, match="occlusion_metric"):
        study_config("quick", occlusion_metric="auc")
    with pytest.raises(ValueError, match="cnn_batch_size"):
        study_config("quick", cnn_batch_size=0)


def test_paper_profile_runs_one_batch_on_cpu(tmp_path):
    report = smoke_test("paper", batch_size=2, device="cpu", folder=tmp_path)
    assert report["parameters"] == 14_750_167 and report["input_shape"] == (128, 128, 128)
    assert report["saliency_shape"] == (128, 128, 128) and np.isfinite(report["train_loss"])


def test_manifest_phantom_entry_names_the_current_generator_and_profiles():
    # issue 12: the manifest's phantom entry must not go stale (generator, profile sizes, native T1 read)
    import importlib
    from neurocomp.manifest import load_manifest
    from neurocomp.sexdiff.study import PROFILES
    manifest = load_manifest()
    entry = manifest["brueggeman2020_phantom_t1"]
    module, name = entry["generator"].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
    for profile in PROFILES:
        phantom = PROFILES[profile]["phantom"]
        assert entry["parameters"][profile] == {"n_subjects": phantom["n_subjects"], "resolution": phantom["resolution"]}, profile
    assert "T1/T1_unbiased_brain.nii.gz" in entry["description"]
    ukb = manifest["ukb_brueggeman2020"]
    assert "T1/T1_unbiased_brain.nii.gz" in ukb["layout"] and "not T1_brain_to_MNI" in ukb["description"]


# --- an independently written UK Biobank bulk folder (issue 12 done-when) -------------------------------------------
# Plain nibabel/pandas, no neurocomp writer: other eids, unrelated main-table columns, a participant without images,
# native images on per-subject grids (shape, voxel size, origin), FSL-like dtypes.
_FIRST_CODES = (10, 11, 12, 13, 16, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58)


def write_independent_ukb_folder(root: Path, n: int = 40, seed: int = 11) -> pd.DataFrame:
    import nibabel as nib
    rng = np.random.default_rng(seed)
    eids = rng.choice(np.arange(1_000_000, 6_000_000), size=n + 1, replace=False)
    sex = (rng.random(n + 1) < 0.5).astype(int); sex[:2] = (0, 1)
    scale = np.exp(0.03 * rng.normal(size=n + 1) + 0.036 * sex)  # males' brains about 11% larger
    rows = []
    for i, eid in enumerate(eids):
        vols = {f"{f}-2.0": float(v) for f, v in zip(range(25011, 25026), rng.normal(5000, 400, 15) * scale[i] ** 3)}
        vols.update({"25002-2.0": 6.0e5 * scale[i] ** 3 * np.exp(0.05 * rng.normal()), "25004-2.0": 3.0e4 * np.exp(0.3 * rng.normal()),
                     "25006-2.0": 7.0e5 * scale[i] ** 3 * np.exp(0.04 * rng.normal()), "25008-2.0": 5.0e5 * scale[i] ** 3 * np.exp(0.04 * rng.normal())})
        vols["25010-2.0"] = vols["25006-2.0"] + vols["25008-2.0"]
        vols["25000-2.0"] = float(np.exp(rng.normal(0, 0.02)) / scale[i] ** 3)  # head-size scaling to standard space
        vols["25009-2.0"] = vols["25010-2.0"] * vols["25000-2.0"]
        rows.append({"eid": int(eid), "31-0.0": int(sex[i]), "21003-2.0": int(rng.integers(45, 80)), "50-0.0": float(rng.normal(170, 9)),
                     "53-2.0": f"2019-0{1 + i % 9}-1{i % 10}", "21001-0.0": float(rng.normal(27, 4)), **vols})
        if i == n: break  # the last participant is in the table only (no bulk folder)
        shape = tuple(int(s) for s in rng.integers(40, 50, 3))
        zooms = rng.uniform(3.6, 4.4, 3)
        affine = np.diag([*zooms, 1.0]); affine[:3, 3] = rng.uniform(-90, -70, 3)
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
        r = np.sqrt(((grid / 0.8) ** 2).sum(0))
        fast = np.where(r < 0.55, 3, np.where(r < 0.8, 2, np.where(r < 0.95, 1, 0))).astype(np.uint8)
        first = np.zeros(shape, np.int16)
        for k, code in enumerate(_FIRST_CODES):  # 15 small blocks inside the white matter, one per structure
            a, b, c = (np.array(shape) * [0.3 + 0.1 * (k % 5), 0.35 + 0.1 * (k // 5), 0.5]).astype(int)
            first[a:a + 3, b:b + 3, c - 2:c + 2] = code
        t1 = np.choose(fast, [0.0, 0.25, 0.6, 1.0]).astype(np.float32) * rng.uniform(300, 600)
        t1 += (fast > 0) * rng.normal(0, 15, shape).astype(np.float32)
        t1[first == 10] *= 1.0 + 0.05 * sex[i]  # a little signal in one structure
        folder = root / f"{eid}_20252_2_0" / "T1"
        (folder / "T1_fast").mkdir(parents=True); (folder / "T1_first").mkdir()
        nib.save(nib.Nifti1Image(np.clip(t1, 0, None), affine), folder / "T1_unbiased_brain.nii.gz")
        nib.save(nib.Nifti1Image(fast, affine), folder / "T1_fast" / "T1_brain_pveseg.nii.gz")
        nib.save(nib.Nifti1Image(first, affine), folder / "T1_first" / "T1_first_all_fast_firstseg.nii.gz")
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # table order unrelated to the folders'
    table.to_csv(root / "ukb_main.csv", index=False)
    return table


def test_run_study_on_an_independently_written_ukb_folder(tmp_path):
    import time, warnings
    from neurocomp.sexdiff.study import load_study_cohort, run_study
    root = tmp_path / "ukb"; root.mkdir()
    table = write_independent_ukb_folder(root)
    with pytest.warns(UserWarning, match="1 of 41 participants have no"):
        cohort = load_study_cohort(root)
    assert len(cohort) == 40 and cohort.grid is None and "50-0.0" in cohort.phenotypes
    assert len({tuple(np.round(cohort.load_image(i).affine.diagonal(), 3)) for i in range(5)}) == 5  # per-subject grids
    # the quick profile made cheaper (one epoch, small grids, no null baselines: they are tested on the phantom)
    config = study_config("quick", seed=0, cnn_epochs=1, tune_length=2, n_trees=10, n_permutations=1, n_saliency=5,
                          null_baselines=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = run_study(str(root), config, progress=False, output_dir=tmp_path / "out", device="cpu")
    seconds = time.perf_counter() - t0
    perf = res.fig3()
    assert set(perf.model) >= {"linear_regression", "elastic_net", "random_forest", "cnn"} and np.isfinite(perf.r2).all()
    ranks = res.fig4()
    assert len(ranks) == 18 and ranks[["linear_regression", "saliency", "occlusion"]].notna().all().all()
    assert res.truth_recovery() is None  # no planted truth beside a real folder
    print(f"run_study on the independent folder: {seconds:.0f} s")
