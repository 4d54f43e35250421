"Brueggeman 2020 (issue 6): Table 1 architecture, planted-truth recovery by the volume models, and bad-input errors."
import numpy as np
import pandas as pd
import pytest
import torch

from neurocomp.phantoms.t1 import REGIONS, simulate_t1_cohort
from neurocomp.sex_differences import (brueggeman_cnn, layer_table, residualised_sex, volume_features, fit_volume_models,
                                       train_test_split_indices, prepare_images, cross_validate_cnn, truth_recovery)

# Table 1 of the paper, row by row (layer type, parameter count)
TABLE1 = [("Conv3D", 224), ("MaxPool3D", 0), ("BatchNorm", 32), ("Conv3D", 3472), ("MaxPool3D", 0), ("BatchNorm", 64),
          ("Conv3D", 13856), ("Conv3D", 55360), ("MaxPool3D", 0), ("BatchNorm", 256), ("Conv3D", 65664),
          ("Conv3D", 262400), ("MaxPool3D", 0), ("Flatten", 0), ("Dense", 14348819), ("Dense", 20)]


def test_table1_parameter_counts():
    model = brueggeman_cnn((128, 128, 128))
    table = layer_table(model, (128, 128, 128))
    assert list(zip(table.layer, table.param)) == TABLE1
    assert table.param.sum() == 14_750_167
    # the torch model holds the same numbers: trainable parameters plus BatchNorm running mean/var (Keras' 4 per channel)
    bn_buffers = sum(m.running_mean.numel() + m.running_var.numel() for m in model if isinstance(m, torch.nn.BatchNorm3d))
    assert sum(p.numel() for p in model.parameters()) + bn_buffers == 14_750_167
    assert table.output_shape.iloc[12] == (118, 5, 5, 256)  # 256 · 118 · 5 · 5 = 755,200 inputs to Dense(19)
    kernels = [m.kernel_size for m in model if isinstance(m, torch.nn.Conv3d)]
    assert kernels == [(3, 3, 3)] * 4 + [(2, 2, 2)] * 2


def test_cnn_follows_the_grid():
    model = brueggeman_cnn((61, 73, 61), width=0.25)
    assert model(torch.zeros(1, 1, 61, 73, 61)).shape == (1, 1)
    with pytest.raises(ValueError, match="too small"):
        brueggeman_cnn((46, 55, 46))


# effects larger than the defaults and less individual variation, so 160 subjects on the coarse 4 mm grid have power
EFFECTS = [("R_amygdala", "volume", 0.06), ("L_caudate", "volume", 0.06), ("R_hippocampus", "intensity", 0.1),
           ("brainstem", "texture", 0.1)]


@pytest.fixture(scope="module")
def cohort():
    return simulate_t1_cohort(160, resolution=4.0, effects=EFFECTS, local_sd=0.01, seed=0, progress=False)


def test_planted_effects_are_in_the_data(cohort):
    ph = cohort.phenotypes
    male = ph.sex.to_numpy() == 1
    rel = ph[list(REGIONS)].div(ph.total_brain_volume, axis=0)
    effect = rel[male].mean() / rel[~male].mean() - 1  # brain-size-corrected male/female volume ratio
    assert effect["R_amygdala"] > 0.08 and effect["L_caudate"] > 0.05
    assert abs(effect["R_hippocampus"]) < 0.03  # intensity-only region: no volume effect
    # the intensity effect is in the images: mean T1 within each subject's own right hippocampus
    lab = REGIONS.index("R_hippocampus") + 1
    means = np.array([cohort.images[i][cohort.labels[i] == lab].mean() for i in range(len(cohort))])
    assert means[male].mean() / means[~male].mean() > 1.04


def test_volume_models_find_planted_volumetric_regions(cohort):
    res = residualised_sex(cohort.phenotypes)
    keep = res.included.to_numpy()
    x = volume_features(cohort.phenotypes)[keep]; y = res.target.to_numpy()[keep]
    tr, te = train_test_split_indices(len(y), 0.3, seed=0)
    perf, imp, _ = fit_volume_models(x.iloc[tr], y[tr], x.iloc[te], y[te], models=("linear_regression", "elastic_net"),
                                     n_repeats=1, tune_length=3, seed=0)
    assert (perf.test_r2 > 0.1).all(), perf
    recovery, _ = truth_recovery(imp, cohort.truth, k=3)
    for _, row in recovery.iterrows():
        assert row["volume_planted_in_top"] == 2, row  # both planted volumetric regions in the top 3
        assert "R_hippocampus" not in row["found"], row  # its effect is intensity only: invisible to volumes
        assert "brainstem" not in row["found"], row  # texture only: invisible too


def test_bad_input_errors(cohort):
    ph = cohort.phenotypes
    with pytest.raises(ValueError, match="total_brain_volume"):
        residualised_sex(ph.drop(columns="total_brain_volume"))
    with pytest.raises(ValueError, match="no variance"):
        residualised_sex(ph.assign(sex=0))
    with pytest.raises(ValueError, match="R_putamen"):
        volume_features(ph.drop(columns="R_putamen"))
    with pytest.raises(ValueError, match="all volumes are identical"):
        volume_features(ph.assign(**{r: 1000.0 for r in REGIONS}))
    x = volume_features(ph)
    with pytest.raises(ValueError, match="no variance"):
        fit_volume_models(x[:100], np.zeros(100), x[100:], np.zeros(len(x) - 100))
    with pytest.raises(ValueError, match="different grid"):
        prepare_images(cohort.images[:4], labels=cohort.labels[:4, :, :, :40])
    with pytest.raises(ValueError, match="different grid"):
        prepare_images(cohort.images[:4], affine=cohort.affine, reference_affine=np.diag([2.0, 2, 2, 1]))
    with pytest.raises(ValueError, match="NaN"):
        prepare_images(np.full((2, 4, 4, 4), np.nan))
    imgs = torch.rand(12, 1, 13, 54, 54)
    with pytest.raises(ValueError, match="no variance"):
        cross_validate_cnn(imgs[:10], np.ones(10), imgs[10:], np.ones(2), progress=False)
