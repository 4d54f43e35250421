from pathlib import Path
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


# --- the three real layouts, on tiny fixtures written by write_fixture_cohort ---------------------------------------
from neurocomp.cohorts import (load_ukb_cohort, load_caps_cohort, load_bids_lesion_cohort, write_fixture_cohort, UKB_FIELDS,
                               Cohort)


@pytest.mark.parametrize("layout", ["ukb", "caps", "bids", "table"])
def test_each_layout_round_trips(tmp_path, layout):
    root = write_fixture_cohort(tmp_path / layout, layout, n=4, seed=1)
    cohort = load_cohort(root / "table.csv", "table") if layout == "table" else load_cohort(root)
    assert isinstance(cohort, Cohort) and cohort.layout == layout and len(cohort) == len(cohort.phenotypes) >= 4
    assert list(cohort.images.columns[:3]) == ["participant_id", "session_id", "path"]
    assert (cohort.grid is None) == (layout == "ukb")
    assert cohort.array(0).dtype == np.float32 and cohort.load_image(0).shape[:3] == cohort.array(0).shape
    assert cohort.truth_dir is None
    if layout == "ukb":
        assert cohort.label_kinds == ["fast", "first"] and "sex" in cohort.phenotypes and "31-0.0" in cohort.phenotypes
        assert set(UKB_FIELDS.values()) <= set(cohort.phenotypes.columns) - set(UKB_FIELDS)
        assert cohort.load_labels(2, "first").shape == cohort.load_image(2).shape


def test_bids_outlier_is_named_whichever_position(tmp_path):
    root = write_fixture_cohort(tmp_path / "bids", "bids", n=4)
    first = sorted(root.glob("sub-01/anat/*_mask.nii.gz"))[0]
    img = nib.load(first); shifted = img.affine.copy(); shifted[2, 3] += 2
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), first)
    with pytest.raises(ImageCheckError, match="sub-01_mask.nii.gz: affine differs"): load_cohort(root)
    # an explicit reference grid is honoured
    from neurocomp.data import Grid
    with pytest.raises(ImageCheckError, match="sub-02_mask.nii.gz: affine differs"):
        load_cohort(root, grid=Grid(img.shape, shifted))


def test_participant_ids_written_as_numbers_are_matched(tmp_path):
    root = write_fixture_cohort(tmp_path / "bids", "bids", n=3)
    (root / "participants.tsv").write_text("participant_id\tage\n01\t70\n02\t64\n03\t59\n")  # no sub- prefix
    assert load_cohort(root).phenotypes.age.tolist() == [70, 64, 59]
    table = pd.DataFrame({"participant_id": [1, 2, 3], "age": [70, 64, 59]})  # read as int
    assert load_bids_lesion_cohort(root, participants=table).phenotypes.age.tolist() == [70, 64, 59]


def test_numeric_text_column_is_reported(tmp_path):
    root = write_fixture_cohort(tmp_path / "bids", "bids", n=3)
    (root / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t?\tM\nsub-03\t59\tF\n")
    with pytest.raises(ValueError, match=r"column 'age' holds numbers and text \['\?'\].*na_values=\['\?'\]"): load_cohort(root)
    assert load_cohort(root, na_values=["?"]).phenotypes.age.isna().sum() == 1


def test_inf_image_is_rejected_naming_it(tmp_path):
    root = write_fixture_cohort(tmp_path / "caps", "caps", n=3)
    cohort = load_cohort(root)
    data = cohort.array(1); data[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(data, nib.load(cohort.paths[1]).affine), cohort.paths[1])
    with pytest.raises(ImageCheckError, match=r"sub-02_ses-M00.*: contains 1 infinite"): load_cohort(root)
    lazy = load_cohort(root, check="header")  # big cohorts: checked when read
    with pytest.raises(ImageCheckError, match="contains 1 infinite"): lazy.array(1)


def test_table_and_images_must_match_one_to_one(tmp_path):
    root = write_fixture_cohort(tmp_path / "caps", "caps", n=3)
    labels = pd.read_csv(root / "labels.tsv", sep="\t")
    labels.iloc[:2].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"1 image\(s\) have no row, e.g. .*sub-03_ses-M00"): load_caps_cohort(root, tmp_path / "short.tsv")
    pd.concat([labels, labels.iloc[[1]]]).to_csv(tmp_path / "dup.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="duplicate subject sub-02/ses-M00"): load_caps_cohort(root, tmp_path / "dup.tsv")
    extra = pd.concat([labels, labels.iloc[[0]].assign(participant_id="sub-09")])
    with pytest.raises(ValueError, match=r"1 row\(s\) have no image, e.g. sub-09/ses-M00"): load_caps_cohort(root, extra)
    # two images for one subject and session (a stray copy) is a duplicate too, naming both files
    src = load_cohort(root).paths[0]
    stray = src.with_name(src.name.replace("sub-01_ses-M00", "sub-01_ses-M00_run-2"))
    stray.write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match=r"duplicate subject: sub-01/ses-M00 has 2 images"): load_cohort(root)


def test_missing_label_image_and_modulated_map(tmp_path):
    root = write_fixture_cohort(tmp_path / "ukb", "ukb", n=3)
    (root / "1000002_20252_2_0" / "T1" / "T1_fast" / "T1_brain_pveseg.nii.gz").unlink()
    with pytest.raises(ImageCheckError, match=r"1000002_20252_2_0/T1/T1_fast/T1_brain_pveseg.nii.gz: fast label image .* does not exist"):
        load_ukb_cohort(root)
    caps = write_fixture_cohort(tmp_path / "caps", "caps", n=2)
    for p in list(caps.rglob("*modulated-off*")): p.rename(p.with_name(p.name.replace("modulated-off", "modulated-on")))
    with pytest.raises(ValueError, match="modulated-on_probability.nii.gz: a modulated map"): load_cohort(caps)
    assert load_caps_cohort(caps, modulated="rescale").array(0).max() == pytest.approx(1.0)


def test_caps_folder_with_both_kinds_reads_the_probability_maps(tmp_path):
    import shutil
    caps = write_fixture_cohort(tmp_path / "caps", "caps", n=3)
    originals = sorted(caps.rglob("*modulated-off*"))
    for p in originals: shutil.copy(p, p.with_name(p.name.replace("modulated-off", "modulated-on")))  # as Clinica writes them
    cohort = load_caps_cohort(caps)
    assert len(cohort) == 3 and all("modulated-off" in Path(p).name for p in cohort.paths)
    originals[1].unlink()  # one session left with its modulated map only
    with pytest.raises(ValueError, match="modulated-on_probability.nii.gz: this session has a modulated map but no modulated-off"):
        load_caps_cohort(caps)


def test_memmap_is_cached_by_fingerprint_and_torch_dataset(tmp_path):
    import torch
    cohort = load_cohort(write_fixture_cohort(tmp_path / "caps", "caps", n=3))
    stack = cohort.memmap(cache=tmp_path / "cache")
    assert stack.shape == (3, 8, 10, 8) and not stack.flags.writeable
    nib.save(nib.Nifti1Image(np.zeros((8, 10, 8), np.float32), nib.load(cohort.paths[2]).affine), cohort.paths[2])
    restacked = cohort.memmap(cache=tmp_path / "cache")  # a replaced file gives a new stack, never a stale one
    assert restacked.filename != stack.filename and restacked[2].max() == 0
    x, y = cohort.torch_dataset(targets=np.array([0, 1, 0]))[1]
    assert x.shape == (1, 8, 10, 8) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="one value per image"): cohort.torch_dataset(targets=[1, 2])
    with pytest.raises(ValueError, match=r"missing or non-finite values at rows \[1\]"): cohort.torch_dataset(targets=[1.0, np.nan, 2.0])


def test_a_float16_stack_halves_the_bytes_and_serves_float32_items(tmp_path):
    "The float16 option of the cached stack (the streaming benchmark's read-bound path): own cache key, close values, clear errors."
    cohort = load_cohort(write_fixture_cohort(tmp_path / "caps", "caps", n=3))
    full = cohort.memmap(cache=tmp_path / "cache", progress=False)
    half = cohort.memmap(cache=tmp_path / "cache", progress=False, dtype="float16")
    assert half.dtype == np.float16 and half.filename != full.filename
    assert np.allclose(half, full, rtol=1e-3, atol=1e-4)
    ds16 = cohort.torch_dataset(targets=np.arange(3.0), source="memmap", cache=tmp_path / "cache", stack_dtype="float16")
    ds32 = cohort.torch_dataset(targets=np.arange(3.0), source="memmap", cache=tmp_path / "cache")
    x16, x32 = ds16[2][0], ds32[2][0]
    assert x16.dtype == x32.dtype and np.allclose(x16.numpy(), x32.numpy(), rtol=1e-3, atol=1e-4)
    assert ds16.fingerprint() != ds32.fingerprint()  # a checkpoint trained on one is not resumed on the other
    with pytest.raises(ValueError, match="dtype must be one of"): cohort.memmap(cache=tmp_path / "cache", dtype="int8")


def test_stack_reads_are_positioned_across_threads_and_forked_workers(tmp_path):
    "Reads of the cached stack share no file position: threads (prefetch) and DataLoader workers forked after the parent opened it."
    import torch
    from concurrent.futures import ThreadPoolExecutor
    cohort = load_cohort(write_fixture_cohort(tmp_path / "caps", "caps", n=6))
    for dtype in ("float32", "float16"):
        stack = cohort.memmap(cache=tmp_path / "cache", progress=False, dtype=dtype)
        ds = cohort.torch_dataset(targets=np.arange(6.0), source="memmap", cache=tmp_path / "cache", stack_dtype=dtype)
        ds[0]  # the parent opens the stack (train_model does, for the item shape) before the workers are forked
        out = np.empty((6, 1, 8, 10, 8), np.float32)
        with ThreadPoolExecutor(4) as pool: targets = list(pool.map(lambda i: ds.read_into(i, out[i]), [5, 4, 3, 2, 1, 0]))
        assert np.array_equal(out[:, 0], stack.astype(np.float32)) and [float(t) for t in targets] == [5, 4, 3, 2, 1, 0]
        for _ in range(3):
            x = torch.cat([b[0] for b in torch.utils.data.DataLoader(ds, batch_size=1, num_workers=3)])
            assert np.array_equal(x[:, 0].numpy(), stack.astype(np.float32))
