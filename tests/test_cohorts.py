"Cohort loaders on small generated BIDS / CAPS folders: every bad image or table is a clear error naming the file."
import numpy as np
import nibabel as nib
import pandas as pd
import pytest
from neurocomp.cohorts import load_cohort, cohort_from_table, check_image, read_phenotypes, detect_layout, ImageCheckError
from neurocomp.data import working_grid

GRID = working_grid(4)


def _save(path, data=None, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(1).random(GRID.shape).astype(np.float32) if data is None else data
    nib.save(nib.Nifti1Image(data, GRID.affine if affine is None else affine), path)
    return path


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    for sub in ("01", "02", "03"):
        _save(root / f"sub-{sub}" / "ses-1" / "anat" / f"sub-{sub}_ses-1_T1w.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t64\tM\nsub-03\t59\tM\n")
    return root


def _caps_path(root, sub, space="dartel", modulated="on"):
    folder = ("dartel/group-ADNI" if space == "dartel" else "segmentation/normalized_space")
    return (root / "subjects" / f"sub-{sub}" / "ses-M00" / "t1" / "spm" / folder /
            f"sub-{sub}_ses-M00_T1w_segm-graymatter_space-Ixi549Space_modulated-{modulated}_probability.nii.gz")


def test_bids_cohort_loads_and_joins_phenotypes(bids):
    cohort = load_cohort(bids, required=["age", "sex"])
    assert detect_layout(bids) == "bids" and len(cohort) == 3 and cohort.grid == GRID
    assert cohort.phenotypes.age.tolist() == [70, 64, 59]
    stacked = cohort.to_array()
    assert stacked.shape == (3, *GRID.shape) and np.allclose(stacked[0], nib.load(cohort.paths[0]).get_fdata())


def test_missing_phenotype_column_and_row(bids):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['diagnosis'\]"): load_cohort(bids, required=["diagnosis"])
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t70\nsub-02\t64\n")
    with pytest.raises(ValueError, match="sub-03_ses-1_T1w.nii.gz"): load_cohort(bids)


def test_corrupt_gzip_is_named(bids):
    bad = bids / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz"
    bad.write_bytes(bad.read_bytes()[:1500])
    with pytest.raises(ImageCheckError, match="sub-02_ses-1_T1w.nii.gz: not a readable NIfTI"): load_cohort(bids)


def test_wrong_affine_and_nans_are_named(bids):
    shifted = GRID.affine.copy(); shifted[1, 3] += 4
    _save(bids / "sub-03" / "ses-1" / "anat" / "sub-03_ses-1_T1w.nii.gz", affine=shifted)
    with pytest.raises(ImageCheckError, match="sub-03_ses-1_T1w.nii.gz: affine differs"): load_cohort(bids)
    data = np.ones(GRID.shape, np.float32); data[0, 0, 0] = np.nan
    _save(bids / "sub-03" / "ses-1" / "anat" / "sub-03_ses-1_T1w.nii.gz", data=data)
    with pytest.raises(ImageCheckError, match="sub-03_ses-1_T1w.nii.gz: contains 1 NaN"): load_cohort(bids)


def test_caps_t1_volume_layout(tmp_path):
    root = tmp_path / "caps"
    for sub in ("01", "02"): _save(_caps_path(root, sub))
    table = tmp_path / "diagnosis.tsv"
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "session_id": ["ses-M00"] * 2, "diagnosis": ["AD", "CN"]}).to_csv(table, sep="\t", index=False)
    assert detect_layout(root) == "caps"
    # the DARTEL folder is an option; modulated maps are refused unless rescaling is asked for
    with pytest.raises(ValueError, match="modulated-on_probability.nii.gz: a modulated map"): load_cohort(root, table, space="dartel")
    cohort = load_cohort(root, table, space="dartel", grid=4, required=["diagnosis"], modulated="rescale")
    assert cohort.layout == "caps" and cohort.phenotypes.diagnosis.tolist() == ["AD", "CN"] and cohort.rescale_max
    with pytest.raises(ValueError, match="no CAPS t1-volume graymatter maps"): load_cohort(root, table)  # default: normalized_space
    for sub in ("01", "02"): _save(_caps_path(root, sub, "normalized_space", "off"))
    with pytest.raises(ImageCheckError, match=r"differs from the reference grid \(121, 145, 121\)"): load_cohort(root, table, grid=1.5)
    assert load_cohort(root, table).grid == GRID


def test_table_cohort_and_errors(tmp_path):
    _save(tmp_path / "a.nii.gz"); _save(tmp_path / "b.nii.gz", data=np.zeros((4, 4, 4), np.float32))
    (tmp_path / "t.csv").write_text("image,age\na.nii.gz,60\nb.nii.gz,61\n")
    with pytest.raises(ValueError, match=r"no majority grid.*b.nii.gz"): cohort_from_table(tmp_path / "t.csv", path_column="image")
    with pytest.raises(ImageCheckError, match=r"b.nii.gz: shape \(4, 4, 4\) differs"): cohort_from_table(tmp_path / "t.csv", path_column="image", grid=GRID)
    with pytest.raises(ValueError, match="missing column"): read_phenotypes(tmp_path / "t.csv", required=["sex"])
    with pytest.raises(FileNotFoundError): detect_layout(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is neither a UK Biobank bulk folder"): detect_layout(tmp_path)
    with pytest.raises(ImageCheckError, match="does not exist"): check_image(tmp_path / "missing.nii.gz")
