"The shared results types: voxel-wise maps back on the mask, atomic writing, summaries, study configurations."
import numpy as np
import nibabel as nib
import pytest
from dataclasses import dataclass
from neurocomp.results import VoxelwiseResults, StudyResults, make_study_config, load_study_results, STUDY_COMPLETE


def _mask(shape=(5, 4, 3), n=7, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8); mask.flat[rng.choice(mask.size, n, replace=False)] = 1
    return nib.Nifti1Image(mask, np.diag([2.0, 2, 2, 1]))


def test_to_nifti_puts_voxel_v_at_the_v_th_mask_voxel_in_c_order():
    mask_img = _mask()
    coef = np.arange(14, dtype=float).reshape(7, 2); se = np.ones((7, 2))
    res = VoxelwiseResults(coef, se, coef / se, covariate_names=["a", "b"], mask_img=mask_img, method="ml")
    maps = res.to_nifti()
    mask = np.asarray(mask_img.dataobj) > 0
    assert np.array_equal(maps["coef_b"].get_fdata()[mask], coef[:, 1])
    assert np.all(maps["z_a"].get_fdata()[~mask] == 0) and np.allclose(maps["z_a"].affine, mask_img.affine)


def test_written_folder_is_replaced_whole_and_failures_leave_it(tmp_path):
    mask_img = _mask()
    big = VoxelwiseResults(np.ones((7, 3)), np.ones((7, 3)), np.ones((7, 3)), covariate_names=["x", "bp", "age"], mask_img=mask_img)
    big.to_nifti(tmp_path / "maps")
    small = VoxelwiseResults(np.ones((7, 1)), np.ones((7, 1)), np.ones((7, 1)), covariate_names=["x"], mask_img=mask_img)
    small.to_nifti(tmp_path / "maps")  # issue 17 item 3: no z_bp left from the bigger model
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["coef_x.nii.gz", "se_x.nii.gz", "z_x.nii.gz"]
    wrong = VoxelwiseResults(np.ones((5, 1)), np.ones((5, 1)), np.ones((5, 1)), covariate_names=["x"], mask_img=mask_img)
    with pytest.raises(ValueError, match="the mask has 7 voxels but the results have 5"): wrong.to_nifti(tmp_path / "maps")
    assert len(list((tmp_path / "maps").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["maps"]


def test_names_alias_extra_maps_and_summary():
    @dataclass
    class WithRhat(VoxelwiseResults):
        rhat: np.ndarray
        def extra_maps(self): return {"rhat_age": self.rhat}
    z = np.array([[3.0, 0.1], [np.nan, -2.5], [1.0, np.inf]])
    res = WithRhat(z, np.ones_like(z), z, np.ones(3), covariate_names=["a", "age"], mask_img=_mask(n=3))
    assert res.names == ["a", "age"] and "rhat_age" in res.to_nifti()
    table = res.summary()
    assert list(table.index) == ["a", "age"] and table.loc["a", "n finite"] == 2 and table.loc["age", "n finite"] == 2
    assert table.loc["a", "max |z|"] == 3.0 and table.iloc[:, 4].tolist() == [1, 1]
    with pytest.raises(ValueError, match="covariate names"): VoxelwiseResults(z, z, z, covariate_names=["only one"]).summary()


def test_make_study_config_rejects_unknown_profile_and_keys():
    profiles = {"quick": {"n": 10, "epochs": 2}, "paper": {"n": 1000, "epochs": 50}}
    assert make_study_config(profiles, "paper", 4, {"n": 3}) == {"n": 3, "epochs": 50, "profile": "paper", "seed": 4}
    with pytest.raises(ValueError, match=r"unknown profile 'medium'; valid profiles: \['paper', 'quick'\]"): make_study_config(profiles, "medium")
    with pytest.raises(ValueError, match=r"unknown study parameter\(s\) \['n_epochs'\]; valid parameters: \['epochs', 'n'\]"):
        make_study_config(profiles, "quick", 0, {"n_epochs": 1})
    with pytest.raises(TypeError, match="seed must be an int"): make_study_config(profiles, "quick", "0")
    assert StudyResults({"a": 1}).config == {"a": 1}


def test_load_study_results_reads_a_results_folder_into_the_packages_class(tmp_path):
    "The generic reader the paper packages share (issue 12 follow-up): config/meta, tables, masks, timings(), clear errors."
    import json
    from dataclasses import field
    import pandas as pd

    @dataclass
    class Toy(StudyResults):
        masks: dict = field(default_factory=dict, kw_only=True)
        def fig3(self): return self.tables["performance"]

    folder = tmp_path / "study"
    with pytest.raises(FileNotFoundError, match="complete.json"): load_study_results(folder, Toy)
    folder.mkdir()
    pd.DataFrame({"model": ["lm", "cnn"], "r2": [0.08, 0.004]}).to_csv(folder / "performance.csv", index=False)
    (folder / "truth.csv").write_text("")  # a table with no rows
    np.savez_compressed(folder / "masks.npz", fold0=np.zeros((3, 3, 3), np.float32))
    config = {"profile": "quick", "seed": 0}
    (folder / STUDY_COMPLETE).write_text(json.dumps({"key": {"config": config}, "timings": {"phantom": 2.0, "cnn": 5.5}}))
    res = load_study_results(folder, Toy, tables=["performance", "truth", "recovery"])
    assert isinstance(res, Toy) and res.config == config and res.output_dir == folder
    assert res.fig3().model.tolist() == ["lm", "cnn"] and res.tables["truth"].empty and "recovery" not in res.tables
    assert res.masks["fold0"].shape == (3, 3, 3)
    assert res.timings().to_dict() == {"phantom": 2.0, "cnn": 5.5}
    assert set(load_study_results(folder).tables) == {"performance", "truth"}  # every csv, into the base class
    assert StudyResults({"a": 1}).timings().empty
    with pytest.raises(TypeError, match="StudyResults"): load_study_results(folder, dict)
    (folder / STUDY_COMPLETE).write_text(json.dumps({"timings": {}}))
    with pytest.raises(ValueError, match="key.config"): load_study_results(folder, Toy)
    (folder / STUDY_COMPLETE).write_text("{truncated")
    with pytest.raises(ValueError, match="not valid JSON"): load_study_results(folder, Toy)
