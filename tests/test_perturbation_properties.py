"Property tests (hypothesis) for `optimize_mask`: every generated input gives a valid result or a ValueError/TypeError naming the problem."
import numpy as np
import torch
from torch import nn
from hypothesis import given, settings, HealthCheck, strategies as st

from neurocomp.perturbation.masks import optimize_mask, MaskResult


class MeanDetector(nn.Module):
    "AD logit falls as the mean intensity rises; `outputs` logits (1 = a single-output model)."
    def __init__(self, outputs=2): super().__init__(); self.outputs = outputs
    def forward(self, x):
        z = 8 * (0.5 - x.flatten(1).mean(1))
        return torch.stack([-z, z], 1) if self.outputs == 2 else z[:, None]


JUNK = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3), st.just("0.1"), st.none(), st.booleans())


@st.composite
def calls(draw):
    "Valid arguments, then (half of the time) one of them, or the images, replaced by something questionable."
    shape = [draw(st.integers(1, 3))] + [draw(st.integers(2, 5)) for _ in range(3)]
    x = np.random.default_rng(draw(st.integers(0, 9))).random(shape).astype(np.float32) * draw(st.sampled_from([0.5, 0.5, 1.0]))
    kw = dict(target_class=1, lambda1=draw(st.sampled_from([0.0, 1e-4, 1e-2, 1.0])), lambda2=draw(st.sampled_from([0.0, 1e-3, 1e-2, 1.0])),
              beta1=draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])), beta2=draw(st.sampled_from([1.0, 2.0, 3.0])),
              lr=draw(st.sampled_from([0.01, 0.1, 1.0])), max_epochs=draw(st.integers(1, 3)), patience=draw(st.integers(1, 3)),
              normalization=draw(st.sampled_from(["mean", "sum"])), per_image=draw(st.booleans()), only_correct=draw(st.booleans()),
              threshold=0.95, tolerance=draw(st.sampled_from([0.0, 0.05, 0.5])))
    outputs = 2
    if draw(st.booleans()):
        what = draw(st.sampled_from(["images", "model", *kw]))
        if what == "images":
            kind = draw(st.sampled_from(["3d", "6d", "channels", "empty", "nan", "inf", "flat", "string", "list", "complex"]))
            x = {"3d": x[0], "6d": x[..., None, None], "channels": np.repeat(x[:, None], 2, 1), "empty": x[:0],
                 "nan": np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x), "inf": np.where(np.arange(x.size).reshape(x.shape) == 0, np.inf, x),
                 "flat": x[:, :1], "string": "image.nii.gz", "list": x.tolist(), "complex": x.astype(np.complex64)}[kind]
        elif what == "model": outputs = 1
        elif what in ("per_image", "only_correct"): pass
        else: kw[what] = draw(st.one_of(JUNK, st.sampled_from(["median", 7, -1, 2.5, 0])))
    return x, outputs, kw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=calls())
def test_optimize_mask_valid_or_clear_error(call):
    x, outputs, kw = call
    try:
        r = optimize_mask(MeanDetector(outputs), x, device="cpu", **kw)
    except (ValueError, TypeError) as e:
        assert str(e), "errors must say what is wrong"
        return
    # a result: finite masks in [0, 1] on the images' grid, one per used image at session level, at most max_epochs epochs
    arr = np.asarray(x)
    assert isinstance(r, MaskResult) and outputs == 2 and arr.ndim == 4
    assert r.masks.shape[1:] == arr.shape[-3:] and np.isfinite(r.masks).all() and r.masks.min() >= 0 and r.masks.max() <= 1
    assert len(r.masks) == (len(r.used) if kw["per_image"] else 1) and 1 <= len(r.history) <= kw["max_epochs"]
    assert (r.best_epoch <= r.stop_epoch).all()
