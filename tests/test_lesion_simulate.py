"Lesion-mask simulator: GRF covariance, bad input, and the match with the authors' 1,000 simulated masks."
import numpy as np
import nibabel as nib
import pytest
from scipy.stats import ks_2samp
from neurocomp.lesions.simulate import (GaussianRandomField, squared_exponential, simulate_lesion_masks, load_ukb_reference,
                                        synthetic_reference, check_ages, ReferenceMaps, UKB_AGE_RANGE)
from neurocomp.lesions.metrics import (SUMMARIES, lesion_summaries, reference_mask_summaries, age_bins, medians_by_age_bin)


def _lagged_correlation(fields, lag):
    "Correlation between voxels separated by the integer vector `lag`, over fields and positions."
    n = fields.shape[1:]
    a = fields[(slice(None),) + tuple(slice(0, n[d] - lag[d]) for d in range(3))]
    b = fields[(slice(None),) + tuple(slice(lag[d], n[d]) for d in range(3))]
    return float((a * b).mean() / fields.var())


@pytest.mark.parametrize("convention", ["randomfields", "paper"])
@pytest.mark.parametrize("length_scale", [1.0, 2.5])
def test_grf_covariance_matches_model(convention, length_scale):
    fields = GaussianRandomField((32, 32, 32), length_scale, convention).sample(300, seed=4)
    assert abs(fields.mean()) < 0.02 and abs(fields.var() - 1) < 0.03
    for lag in [(1, 0, 0), (0, 2, 0), (0, 0, 3), (1, 1, 0), (1, 1, 1), (2, 1, 2)]:
        model = squared_exponential(np.linalg.norm(lag), length_scale, convention)
        # ~33k fields*positions per lag; with spatial correlation the SE is below 0.01
        assert abs(_lagged_correlation(fields, lag) - model) < 0.03, (lag, model)


def test_grf_no_periodic_wrap_and_marginal_normality():
    grf = GaussianRandomField((20, 30, 40), 1.5)
    fields = grf.sample(200, seed=0)
    # the embedding wraps at the torus, not at the box: opposite faces are independent
    for axis in range(3):
        first, last = np.take(fields, 0, axis=axis + 1).ravel(), np.take(fields, -1, axis=axis + 1).ravel()
        assert abs(np.corrcoef(first, last)[0, 1]) < 0.03
    assert ks_2samp(fields[:, 10, 15, 20], np.random.default_rng(0).standard_normal(200)).pvalue > 1e-3
    assert grf.min_eigenvalue > -1e-6


def test_conventions_agree_with_gstools():
    gstools = pytest.importorskip("gstools")
    r = np.linspace(0, 8, 41)
    model = gstools.Gaussian(dim=3, var=1.0, len_scale=1.5, rescale=1.0)
    assert np.allclose(model.correlation(r), squared_exponential(r, 1.5, "randomfields"))
    assert np.allclose(gstools.Gaussian(dim=3, var=1.0, len_scale=1.5 * np.sqrt(2), rescale=1.0).correlation(r),
                       squared_exponential(r, 1.5, "paper"))


def test_bad_input_is_refused():
    ref = synthetic_reference()
    for ell in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="length scale"): simulate_lesion_masks(ref, 4, ell)
    with pytest.raises(ValueError, match="outside the reference age range"): simulate_lesion_masks(ref, 4, ages=[44.0, 60.0])
    with pytest.raises(ValueError, match="outside the reference age range"): check_ages([90.0], UKB_AGE_RANGE)
    with pytest.raises(ValueError, match="NaN"): check_ages([np.nan], UKB_AGE_RANGE)
    with pytest.raises(ValueError, match="same grid"):
        ReferenceMaps(ref.intercept[:, :-1], ref.age, ref.incidence, ref.brain_mask, ref.affine, (45, 80), 62.0)
    with pytest.raises(ValueError, match="binary"):
        ReferenceMaps(ref.intercept, ref.age, ref.incidence, ref.brain_mask * 0.5, ref.affine, (45, 80), 62.0)
    with pytest.raises(TypeError): simulate_lesion_masks(ref.intercept, 4)


def test_fractional_counts_are_refused_by_name():
    "Issue 17 follow-up: 2.5 subjects (or fields, repetitions) is a ValueError naming the count, not numpy's TypeError."
    from neurocomp.lesions.study import study_config
    ref = synthetic_reference()
    for bad in (2.5, "4", float("nan"), True, 0):
        with pytest.raises(ValueError, match="n_subjects"): simulate_lesion_masks(ref, bad)
    with pytest.raises(ValueError, match="n must"): GaussianRandomField((8, 8, 8), 1.5).sample(1.5)
    assert simulate_lesion_masks(ref, 4.0, seed=0).n_subjects == 4  # a whole number written as a float is fine
    with pytest.raises(ValueError, match="repetitions"): study_config("quick", repetitions=1.5)
    with pytest.raises(ValueError, match="null_repetitions"): study_config("quick", null_repetitions=-1)
    with pytest.raises(ValueError, match="n_subjects"): study_config("quick", n_subjects=(50, 2.5))
    assert study_config("quick", n_subjects=50)["n_subjects"] == (50,)


def test_reference_maps_on_another_grid_are_refused(kindalova2021, tmp_path):
    data = tmp_path / "data"; (data / "UKB_summaries").mkdir(parents=True)
    src = kindalova2021 / "data"
    (data / "MNI152_T1_2mm_brain_mask.nii.gz").symlink_to(src / "MNI152_T1_2mm_brain_mask.nii.gz")
    for name in ("coef_(Intercept)_nvars_1_method_2.nii.gz", "empir_prob_mask.nii.gz"):
        (data / "UKB_summaries" / name).symlink_to(src / "UKB_summaries" / name)
    age = nib.load(src / "UKB_summaries" / "coef_age_nvars_1_method_2.nii.gz")
    shifted = age.affine.copy(); shifted[:3, 3] += 2.0  # one voxel off
    nib.save(nib.Nifti1Image(np.asarray(age.dataobj), shifted), data / "UKB_summaries" / "coef_age_nvars_1_method_2.nii.gz")
    with pytest.raises(ValueError, match="different grid"): load_ukb_reference(tmp_path)


def _bootstrap_sd_of_median_difference(a, b, n_boot=400, seed=0):
    rng = np.random.default_rng(seed)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    ma = np.median(rng.choice(a, (n_boot, a.size)), axis=1)
    mb = np.median(rng.choice(b, (n_boot, b.size)), axis=1)
    return float(np.std(ma - mb))


def test_masks_match_the_authors_1000_masks(kindalova2021):
    """THE reference test: UKB maps, ℓ = 1.5, the authors' ages -> our summaries match theirs within sampling error.

    The authors' 1,000 masks (RandomFields RMgauss(var=1, scale=1.5)) and ours are two independent samples of the
    same process if the simulator is right, with the same ages. We require (i) two-sample KS p > 0.01 for volume,
    count and mean size, and (ii) per age decile, |median difference| ≤ 4 bootstrap SDs of that difference (30
    comparisons; ≈0.2 % chance of a false alarm). The same test rejects the paper's written convention
    exp(-r²/2ℓ²) at ℓ = 1.5, so it has power against a wrong covariance.
    """
    theirs = reference_mask_summaries(kindalova2021)
    assert len(theirs) == 1000
    ukb = load_ukb_reference(kindalova2021)
    ours_sim = simulate_lesion_masks(ukb, 1000, 1.5, ages=theirs.age.to_numpy(), seed=2021)
    # same centring as the authors' GLM_sample1000.dat
    assert np.allclose(ours_sim.ages_centred, theirs.age_centred, atol=1e-4)
    ours = lesion_summaries(ours_sim)
    for key in SUMMARIES:
        p = ks_2samp(ours[key].dropna(), theirs[key].dropna()).pvalue
        assert p > 0.01, f"{key}: KS p = {p:.2g}"
    edges = age_bins(theirs.age)
    bins_ours = np.digitize(ours.age, edges[1:-1]); bins_theirs = np.digitize(theirs.age, edges[1:-1])
    for b in range(10):
        for key in SUMMARIES:
            a, c = ours[key].to_numpy()[bins_ours == b], theirs[key].to_numpy()[bins_theirs == b]
            diff = np.nanmedian(a) - np.nanmedian(c)
            sd = _bootstrap_sd_of_median_difference(a, c, seed=b)
            assert abs(diff) <= 4 * sd + 1e-9, f"decile {b} {key}: median difference {diff:.3g} > 4 x {sd:.3g}"
    # power: the paper's written convention (a √2 larger effective scale) does not match the authors' masks
    wrong = lesion_summaries(simulate_lesion_masks(ukb, 500, 1.5, convention="paper", ages=theirs.age.to_numpy()[::2], seed=2021))
    assert min(ks_2samp(wrong[k].dropna(), theirs[k].dropna()).pvalue for k in ("count", "mean_size")) < 1e-4


def test_an_absurd_length_scale_is_refused_before_allocating():
    "Issue 17 item 8: ℓ = 1e9 asked for 44.7 GiB; now the memory estimate refuses first, naming ℓ."
    import tracemalloc
    from neurocomp.core import InsufficientMemoryError
    ref = synthetic_reference(4.0)
    tracemalloc.start()
    with pytest.raises(InsufficientMemoryError, match=r"length scale ℓ = 1e\+09"): simulate_lesion_masks(ref, 4, 1e9)
    assert tracemalloc.get_traced_memory()[1] < 50e6  # nothing big was allocated on the way to the refusal
    tracemalloc.stop()
    with pytest.raises(ValueError): GaussianRandomField((10, 10, 10), 1e7)  # InsufficientMemoryError is a ValueError too


from hypothesis import event, given, settings, HealthCheck, strategies as st


@st.composite
def simulator_inputs(draw):
    "Mostly sound reference maps and parameters, with one kind of fault at a time a third of the time."
    fault = draw(st.sampled_from([None] * 8 + ["empty_brain", "nan_map", "shape", "age_range", "flat_range", "ell", "ages",
                                             "convention", "n"]))
    shape = draw(st.sampled_from([(4, 4, 3), (6, 5, 2), (3, 3, 3)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    brain = np.zeros(shape, bool) if fault == "empty_brain" else rng.random(shape) < 0.8
    incidence = np.where(rng.random(shape) < 0.7, rng.uniform(0.001, 0.3, shape), 0.0)
    intercept = rng.normal(-1.0, 0.5, shape); age = rng.normal(0.02, 0.02, shape)
    if fault == "nan_map": intercept[...] = np.nan
    if fault == "shape": age = age[:-1]
    age_range = {"age_range": (80.0, 45.0), "flat_range": (50.0, 50.0)}.get(fault, (45.0, 80.0))
    n = -1 if fault == "n" else draw(st.integers(1, 12))
    ell = draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e9])) if fault == "ell" else draw(st.sampled_from([0.5, 1.5, 3.0]))
    ages = draw(st.sampled_from([[30.0, 60.0], [np.nan], []])) if fault == "ages" else draw(st.sampled_from([None, [50.0, 60.0, 70.0]]))
    convention = "matern" if fault == "convention" else draw(st.sampled_from(["randomfields", "paper"]))
    return dict(shape=shape, brain=brain, incidence=incidence, intercept=intercept, age=age, age_range=age_range, n=n,
                ell=ell, ages=ages, age_effect=draw(st.booleans()), convention=convention)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(simulator_inputs())
def test_simulator_properties(p):
    "Every generated input: binary masks inside the analysis mask, seeded, or a ValueError/TypeError naming the problem."
    try:
        ref = ReferenceMaps(p["intercept"], p["age"], p["incidence"], p["brain"], np.eye(4), p["age_range"], 62.0)
        ages = p["ages"]
        sim = simulate_lesion_masks(ref, p["n"], p["ell"], ages=ages, age_effect=p["age_effect"], convention=p["convention"], seed=1)
    except (ValueError, TypeError) as e:
        event(f"refused: {type(e).__name__}")
        assert len(str(e)) > 15, repr(e)
        return
    event("simulated")
    assert sim.Y.dtype == np.uint8 and set(np.unique(sim.Y)) <= {0, 1}
    assert sim.Y.shape == (sim.n_subjects, int(ref.analysis_mask.sum())) and sim.n_subjects == (p["n"] if ages is None else len(ages))
    assert np.all(sim.ages >= ref.age_range[0]) and np.all(sim.ages <= ref.age_range[1])
    again = simulate_lesion_masks(ref, p["n"], p["ell"], ages=ages, age_effect=p["age_effect"], convention=p["convention"], seed=1)
    assert np.array_equal(sim.Y, again.Y)
