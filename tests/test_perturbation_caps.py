"""A Clinica CAPS t1-volume folder written by hand (plain nibabel + pandas, not the phantom writer) read by the
Thibeau-Sutre 2020 study's cohort and label path: session table, the paper's stable labels, QC step 1 (issue 12)."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurocomp.cohorts import load_caps_cohort
from neurocomp.perturbation.study import session_table, study_config, study_cohort

NORMALIZED = "t1/spm/segmentation/normalized_space"
SUFFIX = "T1w_segm-graymatter_space-Ixi549Space_modulated-{}_probability.nii.gz"

# ClinicaDL's diagnosis table (participant_id, session_id, diagnosis, age, sex), AIBL-like: sessions every 18 months,
# controls spelled as AIBL codes them ("HC"), mixed case; one subject converts (HC -> MCI -> AD), one misses a visit's
# diagnosis, one MCI at baseline who later has AD (not the paper's stable AD), and a session whose map failed (max GM 0.6).
VISITS = [  # participant, session, diagnosis, age, sex, max GM of the map
    ("sub-AIBL1", "ses-M00", "HC", 71.0, "F", 1.0), ("sub-AIBL1", "ses-M18", "HC", 72.5, "F", 1.0),
    ("sub-AIBL2", "ses-M00", "CN", 68.0, "M", 1.0), ("sub-AIBL2", "ses-M18", None, 69.5, "M", 1.0),
    ("sub-AIBL3", "ses-M00", "HC", 75.0, "F", 1.0), ("sub-AIBL3", "ses-M18", "MCI", 76.5, "F", 1.0),
    ("sub-AIBL3", "ses-M36", "AD", 78.0, "F", 1.0),
    ("sub-AIBL4", "ses-M00", "AD", 80.0, "M", 1.0), ("sub-AIBL4", "ses-M18", "ad", 81.5, "M", 0.6),
    ("sub-AIBL5", "ses-M00", "Dementia", 77.0, "F", 1.0),
    ("sub-AIBL6", "ses-M00", "MCI", 73.0, "M", 1.0), ("sub-AIBL6", "ses-M18", "AD", 74.5, "M", 1.0),
]
EXPECTED_LABEL = {"sub-AIBL1": "CN", "sub-AIBL2": "CN", "sub-AIBL3": None, "sub-AIBL4": "AD", "sub-AIBL5": "AD", "sub-AIBL6": None}


def write_caps_by_hand(root: Path, visits=VISITS, shape=(12, 14, 12), voxel=4.0, modulated_on_too=False, seed=0) -> Path:
    "A CAPS t1-volume folder as Clinica writes it (with outputs the study must ignore) plus ClinicaDL's labels.tsv."
    rng = np.random.default_rng(seed)
    affine = np.diag([voxel, voxel, voxel, 1.0]); affine[:3, 3] = -voxel * np.asarray(shape) / 2
    for pid, ses, _, _, _, max_gm in visits:
        folder = root / "subjects" / pid / ses / NORMALIZED
        folder.mkdir(parents=True, exist_ok=True)
        gm = (rng.random(shape) * max_gm).astype(np.float32); gm.flat[0] = max_gm
        nib.save(nib.Nifti1Image(gm, affine), folder / f"{pid}_{ses}_{SUFFIX.format('off')}")
        if modulated_on_too:  # Clinica's t1-volume-tissue-segmentation writes both (SPM's w* and mw* outputs)
            nib.save(nib.Nifti1Image(gm * 1.7, affine), folder / f"{pid}_{ses}_{SUFFIX.format('on')}")
        native = root / "subjects" / pid / ses / "t1/spm/segmentation/native_space"
        native.mkdir(parents=True, exist_ok=True)  # native-space segmentation: another grid, not an input
        nib.save(nib.Nifti1Image(np.zeros((9, 9, 9), np.float32), np.eye(4)), native / f"{pid}_{ses}_T1w_segm-graymatter_probability.nii.gz")
    # the distractor: a DARTEL-space modulated map (values up to 1.9) of one session, outside normalized_space
    dartel = root / "subjects" / visits[0][0] / visits[0][1] / "t1/spm/dartel/group-AIBL"
    dartel.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, 1.9, np.float32), affine), dartel / f"{visits[0][0]}_{visits[0][1]}_{SUFFIX.format('on')}")
    table = pd.DataFrame(visits, columns=["participant_id", "session_id", "diagnosis", "age", "sex", "max_gm"]).drop(columns="max_gm")
    table.to_csv(root / "labels.tsv", sep="\t", index=False, na_rep="n/a")
    return root


def test_hand_written_caps_folder_through_the_study_cohort_path(tmp_path):
    root = write_caps_by_hand(tmp_path / "aibl")
    cohort = study_cohort(str(root), study_config("quick"))  # the path run_study takes for cohort=DIR
    assert cohort.layout == "caps" and len(cohort) == len(VISITS) and cohort.grid.shape == (12, 14, 12)
    assert all(p.name.endswith("modulated-off_probability.nii.gz") and "normalized_space" in str(p) for p in cohort.paths)
    sessions = session_table(cohort, progress=False)
    assert sessions.groupby("participant_id").size().to_dict() == {"sub-AIBL1": 2, "sub-AIBL2": 2, "sub-AIBL3": 3, "sub-AIBL4": 2, "sub-AIBL5": 1, "sub-AIBL6": 2}
    for pid, expected in EXPECTED_LABEL.items():
        labels = sessions.label[sessions.participant_id == pid]
        assert (labels.isna().all() if expected is None else (labels == expected).all()), (pid, labels.tolist())
    assert sessions.y.dropna().astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert sorted(sessions.session_id[sessions.baseline]) == ["ses-M00"] * 6
    failed = sessions[~sessions.qc_pass]  # QC step 1: maximal GM below 0.95
    assert failed[["participant_id", "session_id"]].values.tolist() == [["sub-AIBL4", "ses-M18"]]
    assert sessions.max_gm[sessions.qc_pass].min() >= 0.95


def test_clinica_folder_with_both_normalized_maps_uses_the_probability_maps(tmp_path):
    root = write_caps_by_hand(tmp_path / "aibl", modulated_on_too=True)
    cohort = load_caps_cohort(root, required=["diagnosis"], progress=False)
    assert len(cohort) == len(VISITS) and all("modulated-off" in p.name for p in cohort.paths)
