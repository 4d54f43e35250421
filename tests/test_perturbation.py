"Perturbation masks of a 3D AD classifier (Thibeau-Sutre 2020): phantoms, classifier, masks and similarity, checked against planted truth."
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from neurocomp.phantoms.grey_matter import simulate_grey_matter_cohort, coarsen_cohort, max_gm_quality_check, demographics_table
from neurocomp.perturbation.classifier import ADClassifier, blocks_for_grid, train_classifier, balanced_accuracy
from neurocomp.perturbation.masks import optimize_mask, session_masks, class_probabilities, perturb
from neurocomp.perturbation.similarity import roi_similarity, score_against_truth, top_rois, prob_cnn_dissimilarity


@pytest.fixture(scope="module")
def cohort():
    return coarsen_cohort(simulate_grey_matter_cohort(8, 8, "ADNI-like", resolution=4.0, max_sessions=2, severity_scale=2.0, seed=3), 2)


class PlantedAtrophyDetector(nn.Module):
    "A classifier that knows the truth: logit(AD) grows as GM in the planted hippocampus and amygdala falls."
    def __init__(self, region, reference):
        super().__init__(); self.region = torch.from_numpy(region); self.reference = reference
    def forward(self, x):
        ad = 10 * (self.reference - x[:, 0][:, self.region].mean(1))
        return torch.stack([-ad, ad], 1)


def _detector(cohort):
    w = cohort.truth["atrophy_weight"]
    region = w >= 0.9  # hippocampus and amygdala
    s = cohort.sessions
    gm = cohort.images[:, region].mean(1)
    ok = s.defect.eq("none").to_numpy()
    reference = 0.5 * (gm[ok & s.label.eq("AD").to_numpy()].mean() + gm[ok & s.label.eq("CN").to_numpy()].mean())
    return PlantedAtrophyDetector(region, float(reference)), region


def test_phantom_quality_check_and_truth(cohort):
    qc = max_gm_quality_check(cohort)
    assert set(qc.defect[~qc.qc_pass]) == {"low_max"} and qc.qc_pass.sum() == len(cohort) - 2
    table = demographics_table(cohort)
    assert table.Subjects.sum() == 16 and cohort.truth["truth_mask"].shape == cohort.grid.shape
    assert len(cohort.truth["roi_names"]) == 10


def test_mask_recovers_planted_region(cohort):
    detector, region = _detector(cohort)
    s = cohort.sessions
    ad = cohort.images[s.label.eq("AD").to_numpy() & s.defect.eq("none").to_numpy()]
    assert class_probabilities(detector, ad)[:, 1].mean() > 0.5
    result = optimize_mask(detector, ad, 1, lambda1=2e-3, lambda2=2e-3, beta1=0.1, beta2=1.0, max_epochs=20, patience=10)
    masked = class_probabilities(detector, perturb(torch.from_numpy(ad[result.used]), torch.from_numpy(result.mask)))[:, 1]
    assert masked.mean() < 0.5  # the mask removes the AD decision
    touched = result.mask < 1
    assert touched.any() and (touched & region).sum() / touched.sum() > 0.6  # and it does so where the truth is
    scores = score_against_truth(1 - result.mask, region, ["Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R"])
    assert scores["roi_precision"] >= 0.5 and scores["voxel_auc"] > 0.8
    assert set(top_rois(result.mask, 2).roi) <= {"Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R"}


def test_session_masks_of_one_subject_are_similar(cohort):
    detector, _ = _detector(cohort)
    s = cohort.sessions
    idx = np.flatnonzero(s.label.eq("AD").to_numpy() & s.defect.eq("none").to_numpy())[:4]
    result = session_masks(detector, cohort.images[idx], lambda1=2e-5, lambda2=2e-5, max_epochs=30, patience=20)
    assert result.masks.shape[0] == len(result.used)
    assert roi_similarity(result.masks[0], result.masks[1]) > 0.5
    image = cohort.images[idx[result.used[0]]]
    unmasked = class_probabilities(detector, image)[0, 1]
    assert prob_cnn_dissimilarity(result.masks[0], result.masks[1], detector, image) < unmasked  # each mask also lowers the other's AD probability


def test_bad_input_errors(cohort):
    detector, _ = _detector(cohort)
    cn = cohort.images[cohort.sessions.label.eq("CN").to_numpy() & cohort.sessions.defect.eq("none").to_numpy()]
    with pytest.raises(ValueError, match="classifies none"):
        optimize_mask(detector, cn, 1, 1e-3, 1e-3, 0.1, 1.0)
    with pytest.raises(ValueError, match="empty"):
        optimize_mask(detector, cn[:0], 1, 1e-3, 1e-3, 0.1, 1.0)
    with pytest.raises(ValueError, match="grid"):
        roi_similarity(np.ones((20, 20, 20)), np.ones((20, 20, 20)))
    with pytest.raises(ValueError, match="different grids"):
        roi_similarity(np.ones(cohort.grid.shape), np.ones((46, 55, 46)))


def test_classifier_fits_grids_and_selects_on_balanced_accuracy():
    assert ADClassifier().feature_shape == (128, 1, 2, 1)
    assert blocks_for_grid((23, 28, 23)) == 5
    with pytest.raises(ValueError, match="do not fit"):
        ADClassifier((23, 28, 23))
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.05, (32, 10, 10, 10)).astype(np.float32); y = np.arange(32) % 2
    x[y == 1, 3:7, 3:7, 3:7] += 0.3
    history, model = train_classifier(ADClassifier((10, 10, 10), (4, 8), (1, 1), dropout=0.0), (x[:24], y[:24]), (x[24:], y[24:]),
                                      epochs=6, lr=3e-3, seed=0)
    best = history.val_balanced_accuracy.max()
    assert history.val_balanced_accuracy[history.selected].iloc[0] == best
    from neurocomp.training import predict
    assert balanced_accuracy(y[24:], predict(model, x[24:, None])) == best
