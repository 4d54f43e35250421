"Perturbation masks of a 3D AD classifier (Thibeau-Sutre 2020): CAPS phantom, labels, QC, masks, similarity and truth scores."
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neurocomp.cohorts import load_caps_cohort
from neurocomp.data import load_atlas
from neurocomp.perturbation.phantom import write_phantom_cohort, read_phantom_truth, planted_roi_names, PAPER_REPORTED_REGIONS
from neurocomp.perturbation.classifier import stable_labels, max_gm_quality_check, demographics_table
from neurocomp.perturbation.masks import optimize_mask, session_masks, mask_regularization, masked_probability
from neurocomp.perturbation.metrics.similarity import roi_similarity, roi_densities, truth_scores, null_importance_maps
from neurocomp.perturbation.study import session_table


@pytest.fixture(scope="module")
def caps(tmp_path_factory):
    root = write_phantom_cohort(tmp_path_factory.mktemp("caps") / "adni", 6, 6, "ADNI-like", 4.0, max_sessions=3, n_converters=2, seed=3)
    return load_caps_cohort(root, progress=False)


def test_phantom_is_a_caps_folder_with_labels_and_truth(caps):
    root = caps.root
    assert caps.layout == "caps" and caps.grid.shape == (46, 55, 46)
    first = caps.paths[0].relative_to(root)
    assert first.parts[0] == "subjects" and first.parts[3:6] == ("t1", "spm", "segmentation")
    assert first.name.endswith("_T1w_segm-graymatter_space-Ixi549Space_modulated-off_probability.nii.gz")
    labels = pd.read_csv(root / "labels.tsv", sep="\t")
    assert list(labels.columns[:5]) == ["participant_id", "session_id", "diagnosis", "age", "sex"]
    truth = read_phantom_truth(caps)
    assert truth.truth_mask.shape == caps.grid.shape and set(truth.roi_names) == set(planted_roi_names())
    assert {"Precuneus_L", "Cingulate_Post_R"} <= set(truth.roi_names)  # regions the paper did not report are planted too
    assert not set(truth.roi_names) <= {f"{r}_{s}" for r in PAPER_REPORTED_REGIONS for s in "LR"}


def test_session_table_labels_and_quality_check(caps):
    sessions = session_table(caps, progress=False)
    truth = read_phantom_truth(caps).sessions.set_index(["participant_id", "session_id"])
    group = truth.group.loc[list(zip(sessions.participant_id, sessions.session_id))].to_numpy()
    defect = truth.defect.loc[list(zip(sessions.participant_id, sessions.session_id))].to_numpy()
    assert sessions.label[group == "converter"].isna().all()
    assert (sessions.label[group == "AD"] == "AD").all() and (sessions.label[group == "CN"] == "CN").all()
    assert set(defect[~sessions.qc_pass.to_numpy()]) == {"low_max"}  # step 1 catches exactly the failed segmentations
    qc = max_gm_quality_check(caps)
    assert qc.max_gm.is_monotonic_increasing and (~qc.qc_pass).sum() == 2
    table = demographics_table({"ADNI-like": sessions})
    assert table.Subjects.sum() == 12 and set(table.Label) == {"CN", "AD"}


def test_stable_labels_for_adni_and_aibl_spellings():
    adni = pd.DataFrame({"participant_id": ["a", "a", "b", "b", "c", "c"], "session_id": ["ses-M00", "ses-M12"] * 3,
                         "diagnosis": ["CN", "MCI", "Dementia", "Dementia", "NL", "NL"]})
    aibl = pd.DataFrame({"participant_id": ["x", "x", "y"], "session_id": ["ses-M18", "ses-M00", "ses-M00"], "diagnosis": ["AD", "AD", "MCI"]})
    assert stable_labels(adni).tolist() == [pd.NA, pd.NA, "AD", "AD", "CN", "CN"] or stable_labels(adni).fillna("-").tolist() == ["-", "-", "AD", "AD", "CN", "CN"]
    assert stable_labels(aibl).fillna("-").tolist() == ["AD", "AD", "-"]
    with pytest.raises(ValueError, match="several rows"):
        stable_labels(pd.concat([aibl, aibl.iloc[:1]]))


class BoxDetector(nn.Module):
    def __init__(self, box, scale=8.0): super().__init__(); self.box, self.scale = box, scale
    def forward(self, x):
        z = self.scale * (0.5 - x[(slice(None), slice(None), *self.box)].mean((1, 2, 3, 4)))
        return torch.stack([-z, z], 1)


def test_mask_restores_the_region_and_session_masks_stop_on_their_own():
    box = (slice(4, 8), slice(4, 9), slice(3, 7))
    images = np.full((3, 12, 14, 10), 0.6, np.float32)
    for i, depth in enumerate((0.45, 0.3, 0.05)): images[(i, *box)] = depth
    det = BoxDetector(box)
    r = optimize_mask(det, images, 1, 1e-3, 1e-3, 0.1, 1.0, max_epochs=40)
    inside = np.zeros(images.shape[1:], bool); inside[box] = True
    assert r.mask[inside].mean() < 0.6 and r.mask[~inside].mean() > 0.97 and masked_probability(det, images, r.mask) < 0.5
    kw = dict(per_image=True, max_epochs=60, patience=3, tolerance=0.2)
    both = optimize_mask(det, images, 1, 1e-3, 1e-3, 0.1, 1.0, **kw)
    alone = [optimize_mask(det, images[i:i + 1], 1, 1e-3, 1e-3, 0.1, 1.0, **kw) for i in range(3)]
    assert len(set(both.stop_epoch.tolist())) > 1 and (both.stop_epoch < 60).all()
    assert all(np.allclose(both.raw_masks[i], alone[i].raw_masks[0], atol=1e-6) for i in range(3))


def test_normalisation_of_the_regularisers():
    box = torch.ones(1, 121, 145, 121); box[0, 50:62, 60:76, 40:50] = 0.0
    a_sum, s_sum = mask_regularization(box, 1e-4, 1e-2, 0.1, 1.0, normalization="sum")
    a_mean, s_mean = mask_regularization(box, 1e-4, 1e-2, 0.1, 1.0, normalization="mean")
    assert float(s_sum) > 9 and float(a_mean + s_mean) < 1e-5  # literal sums exceed the classifier term; means do not
    with pytest.raises(ValueError, match="normalization"):
        mask_regularization(box, 1e-4, 1e-2, 0.1, 1.0, normalization="median")


def test_optimize_mask_refuses_ambiguous_or_useless_input():
    box = (slice(1, 3), slice(1, 3), slice(1, 3))
    images = np.full((2, 5, 5, 5), 0.6, np.float32); images[(slice(None), *box)] = 0.1
    with pytest.raises(ValueError, match="one output"):
        class OneLogit(nn.Module):
            def forward(self, x): return x.mean((1, 2, 3, 4))[:, None]
        optimize_mask(OneLogit(), images, 0, 1e-3, 1e-3, 0.1, 1.0)
    with pytest.raises(ValueError, match="one 3D volume"):
        optimize_mask(BoxDetector(box), images[0], 1, 1e-3, 1e-3, 0.1, 1.0)
    with pytest.raises(TypeError, match="integer"):
        optimize_mask(BoxDetector(box), images, True, 1e-3, 1e-3, 0.1, 1.0)
    with pytest.raises(ValueError, match="regularization_factor"):
        session_masks(BoxDetector(box), images, regularization_factor=-1)


def test_roi_weightings_and_the_literal_reading():
    atlas, labels = load_atlas("aal2", 4.0)
    a = np.asarray(atlas.dataobj); lab = dict(zip(labels.name, labels.label))
    hip = np.ones(a.shape, np.float32); hip[a == lab["Hippocampus_L"]] = 0.0
    pcu = np.ones(a.shape, np.float32); pcu[a == lab["Precuneus_R"]] = 0.0
    assert roi_similarity(hip, pcu, weighting="mean") == 0 and roi_similarity(hip, pcu, weighting="sum") == 0
    assert roi_similarity(hip, pcu, weighting="literal") > 0.98  # 1 - sum(m) is dominated by the ROI sizes
    assert roi_densities(hip, weighting="sum")["Hippocampus_L"] == (a == lab["Hippocampus_L"]).sum()


def test_truth_scores_are_not_passed_by_null_maps():
    atlas, labels = load_atlas("aal2", 4.0)
    a = np.asarray(atlas.dataobj); lab = dict(zip(labels.name, labels.label))
    truth = (a == lab["Hippocampus_L"]) | (a == lab["Precuneus_R"])
    loss = truth * np.linspace(0.5, 1.0, truth.size).reshape(truth.shape)
    kw = dict(truth_mask=truth, expected_loss=loss, truth_rois=["Hippocampus_L", "Precuneus_R"], unreported_rois=["Precuneus_R"])
    exact = truth_scores(loss, **kw)
    nulls = {k: truth_scores(v, **kw) for k, v in null_importance_maps(a.shape, ["Hippocampus_L", "Hippocampus_R"]).items()}
    for name, s in nulls.items():
        assert s["mass_in_truth"] < exact["mass_in_truth"] and s["unreported_found"] < 1, name
    assert nulls["random (null)"]["raw_auc"] == pytest.approx(0.5, abs=0.05)
