"fit_lesion_maps from images: no stale maps after a smaller model, numeric text refused by name, BSGLMM maps, and property tests (a valid result or a ValueError/TypeError naming the problem)."
import warnings
import numpy as np
import nibabel as nib
import pandas as pd
import pytest
from hypothesis import event, given, settings, HealthCheck, strategies as st
from neurocomp.results import VoxelwiseResults
from neurocomp.lesions.mapping import fit_lesion_maps, design_matrix, proper_posterior_voxels

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _cohort(folder, n=80, shape=(4, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"bp": rng.normal(size=n), "age": rng.normal(60, 7, n), "sex": rng.integers(0, 2, n).astype(float)})
    eta = -1.0 + 0.8 * table.bp.to_numpy()[:, None, None, None] + np.zeros((n,) + shape)
    masks = (eta + rng.normal(size=eta.shape) > 0).astype(np.uint8)
    paths = []
    for i in range(n):
        paths.append(folder / f"sub{i:03d}.nii.gz"); nib.save(nib.Nifti1Image(masks[i], AFFINE), paths[-1])
    return paths, table


def test_a_smaller_model_leaves_no_stale_maps(tmp_path):
    "Issue 17 item 3: the earlier model's z_bp/zfdr_bp must not survive beside the new provenance."
    paths, table = _cohort(tmp_path)
    out = tmp_path / "maps"
    fit_lesion_maps(paths, table, "lesion ~ bp + age", output_dir=out)
    assert (out / "z_bp.nii.gz").exists() and (out / "zfdr_bp.nii.gz").exists()
    fit_lesion_maps(paths, table, "lesion ~ age", output_dir=out)
    names = {p.name for p in out.iterdir()}
    assert not {n for n in names if "bp" in n}, names
    assert {"coef_age.nii.gz", "z_age.nii.gz", "provenance.json", "incidence.nii.gz"} <= names
    assert not list(tmp_path.glob(".maps.*.staging"))  # no staging folder left behind


def test_a_failed_run_leaves_the_previous_maps(tmp_path):
    paths, table = _cohort(tmp_path)
    out = tmp_path / "maps"
    fit_lesion_maps(paths, table, "lesion ~ bp", output_dir=out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError): fit_lesion_maps(paths, table, "lesion ~ bp", output_dir=out, maxit=-1)
    assert sorted(p.name for p in out.iterdir()) == before


def test_numeric_text_is_refused_by_name(tmp_path):
    "Issue 17 item 4: a CSV's 'n/a' must not turn blood pressure into a 29-level categorical."
    paths, table = _cohort(tmp_path, n=30)
    text = table.assign(bp=table.bp.round(1).astype(str))
    text.loc[3, "bp"] = "n/a"
    with pytest.raises(ValueError, match=r"'bp' looks numeric but is stored as text.*'n/a'"):
        fit_lesion_maps(paths, text, "lesion ~ bp + age")
    with pytest.raises(ValueError, match="'bp' looks numeric"): fit_lesion_maps(paths, text, ["bp", "age"])
    ids = table.assign(scan=[f"scan{i}" for i in range(30)])
    with pytest.raises(ValueError, match="'scan' is categorical with 30 distinct values for 30 subjects"):
        design_matrix(ids, "lesion ~ age + scan")
    fine = table.assign(site=np.where(np.arange(30) % 2, "A", "B"))
    assert list(design_matrix(fine, "lesion ~ age + site").columns) == ["Intercept", "age", "site[T.B]"]


def test_bsglmm_maps_from_nifti(tmp_path):
    paths, table = _cohort(tmp_path, n=60)
    maps = fit_lesion_maps(paths, table, "lesion ~ bp", method="bsglmm", n_samples=40, burn_in=20, chains=2, seed=1,
                           output_dir=tmp_path / "bayes")
    assert isinstance(maps, VoxelwiseResults) and maps.method == "BSGLMM"
    files = {p.name for p in (tmp_path / "bayes").iterdir()}
    assert {"coef_bp.nii.gz", "se_bp.nii.gz", "z_bp.nii.gz", "rhat_bp.nii.gz", "ess_bp.nii.gz"} <= files
    glm = fit_lesion_maps(paths, table, "lesion ~ bp")
    shared = {f"{kind}_{term}" for kind in ("coef", "se", "z", "zfdr") for term in ("Intercept", "bp")} | {"incidence"}
    assert shared <= set(glm.maps()) and shared <= set(maps.maps())  # the same map set; BSGLMM adds R-hat/ESS
    assert np.corrcoef(maps.coef[:, 1], glm.coef[:, 1])[0, 1] > 0.5


def test_separation_guard_excludes_isolated_separated_voxels():
    rng = np.random.default_rng(0)
    age = rng.uniform(-10, 10, 100); X = np.column_stack([np.ones(100), age])
    Y = np.column_stack([(rng.random(100) < 0.3), np.zeros(100), (age > 5)]).astype(np.uint8)
    keep = proper_posterior_voxels(Y, X, np.array([[0, 0, 0], [5, 5, 5], [9, 0, 0]]))
    assert keep.tolist() == [True, False, False]


# ---- property tests: every generated input gives a valid result or a ValueError/TypeError naming the problem

@st.composite
def lesion_inputs(draw):
    "Mostly sound inputs (so valid fits are exercised), with one kind of fault at a time a third of the time."
    fault = draw(st.sampled_from([None] * 6 + ["few_subjects", "bad_value", "text", "constant", "nan", "missing_rows",
                                             "object_numbers", "formula", "method", "no_lesions", "dtype"]))
    n = draw(st.integers(1, 4)) if fault == "few_subjects" else draw(st.integers(12, 30))
    shape = draw(st.sampled_from([(2, 2, 2), (3, 2, 1), (1, 1, 1)]))
    rate = 0.0 if fault == "no_lesions" else draw(st.sampled_from([0.05, 0.3, 0.9]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.int16, np.float64]))
    masks = (rng.random((n,) + shape) < rate).astype(dtype)
    if fault == "bad_value":
        masks = masks.astype(np.float32); masks.flat[0] = draw(st.sampled_from([2.0, 0.5, np.nan, -1.0, np.inf]))
    if fault == "dtype": masks = masks.astype(np.float64) * 255  # 0/255 masks, as some tools write them
    table = pd.DataFrame({"age": rng.normal(60, 7, n), "sex": rng.integers(0, 2, n).astype(float), "bp": rng.normal(size=n)})
    if fault == "text": table["bp"] = [str(v) if i else "n/a" for i, v in enumerate(table.bp.round(2))]
    elif fault == "constant": table["bp"] = 1.0
    elif fault == "nan": table.loc[0, "bp"] = np.nan
    elif fault == "missing_rows": table = table.iloc[:-1]
    elif fault == "object_numbers": table["bp"] = table.bp.round(2).astype(str)
    formula = (draw(st.sampled_from(["lesion ~ nothere", "lesion ~ bp +", 3, ["bp", "bp"], "lesion ~ C(age)"])) if fault == "formula"
               else draw(st.sampled_from(["lesion ~ bp + age", "lesion ~ age * sex", ["bp"], "lesion ~ bp"])))
    method = "firth" if fault == "method" else draw(st.sampled_from(["ml", "meanbr"]))
    return masks, table, formula, method


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lesion_inputs())
def test_fit_lesion_maps_properties(inputs):
    masks, table, formula, method = inputs
    images = [nib.Nifti1Image(m, AFFINE) for m in masks]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fit_lesion_maps(images, table, formula, method=method, n_jobs=1)
    except (ValueError, TypeError) as e:
        event(f"refused: {type(e).__name__}")
        assert len(str(e)) > 20, f"an unhelpful message: {e!r}"
        assert type(e).__module__ in ("builtins", "neurocomp.core") or "neurocomp" in type(e).__module__, type(e)
        return
    event("fitted")
    # a valid result: one row per fitted voxel, incidence in (0, 1], MeanBR estimates always finite
    assert isinstance(out, VoxelwiseResults) and out.coef.shape == out.se.shape == out.z.shape
    assert out.coef.shape == (len(out.fitted), len(out.covariate_names)) and 0 < out.incidence.min() <= out.incidence.max() <= 1
    assert np.all(np.asarray(masks).reshape(len(masks), -1)[:, out.fitted].any(0))
    if method == "meanbr": assert np.isfinite(out.coef).all()
    images = out.to_nifti()
    assert all(img.shape == masks.shape[1:] for img in images.values())


def test_output_dir_with_the_users_files_is_refused_not_emptied(tmp_path):
    "fit_lesion_maps replaces output_dir whole, so a folder holding files it did not write is refused and left intact."
    import numpy as np, nibabel as nib, pandas as pd, pytest
    from neurocomp.lesions.mapping import fit_lesion_maps
    rng = np.random.default_rng(0)
    masks = [nib.Nifti1Image((rng.random((5, 5, 5)) < 0.3).astype(np.uint8), np.eye(4)) for _ in range(40)]
    covariates = pd.DataFrame({"age": rng.normal(size=40)})
    out = tmp_path / "maps"; out.mkdir(); (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"): fit_lesion_maps(masks, covariates, "lesion ~ age", output_dir=out)
    assert (out / "notes.txt").read_text() == "mine"
    reused = tmp_path / "reused"
    fit_lesion_maps(masks, covariates, "lesion ~ age", output_dir=reused)
    fit_lesion_maps(masks, covariates, "lesion ~ 1", output_dir=reused)  # an earlier run's maps are replaced
    assert not (reused / "z_age.nii.gz").exists() and (reused / "z_Intercept.nii.gz").exists()


def test_output_dir_under_a_file_is_refused_before_the_fit(tmp_path):
    "Issue 17 follow-up: an output_dir below a regular file is a ValueError naming the path, raised before any work."
    paths, table = _cohort(tmp_path, n=20)
    (tmp_path / "notes.txt").write_text("mine")
    for bad in (tmp_path / "notes.txt" / "maps", tmp_path / "notes.txt"):
        with pytest.raises(ValueError, match="output_dir") as info:
            fit_lesion_maps(paths, table, ["bp"], output_dir=bad)
        assert str(bad) in str(info.value)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".*staging"))


@pytest.mark.parametrize("odd", [0, 1, 7])
def test_a_mask_on_another_grid_is_named_even_when_it_is_the_first(tmp_path, odd):
    "Issue 17 follow-up: the grid most masks share is the reference, so the odd mask is named wherever it stands."
    paths, table = _cohort(tmp_path, n=8)
    img = nib.load(paths[odd])
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([1.0, 1.0, 1.0, 1.0])), paths[odd])
    with pytest.raises(ValueError, match="different grid") as info:
        fit_lesion_maps(paths, table, ["bp"])
    message = str(info.value)
    assert str(paths[odd]) in message and "7 of the 8 masks" in message
    assert not any(str(p) in message for i, p in enumerate(paths) if i != odd)
