"""Fault injection for the lesion engine's checkpointed loops (issue 17): GLM voxel blocks and BSGLMM chains are
interrupted, their last checkpoint damaged, and resumed. Each gives the uninterrupted result or a clear refusal that
names the file and says what to do, never a raw BadZipFile/OSError."""
import numpy as np
import pytest
from scipy import stats

import neurocomp.lesions.glm as glm
from neurocomp.lesions.glm import fit_voxelwise
from neurocomp.lesions.bsglmm import fit_bsglmm


def _toy(seed=0, n=120, v=200):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    eta = -1.5 + X[:, 1:] @ np.array([0.5, 0.3]) + rng.normal(0, 0.5, size=(v, 1))
    return (rng.random((v, n)) < stats.norm.cdf(eta)).T.astype(np.uint8), X


def _damages(data):
    "Ways a checkpoint file gets damaged: truncated (at several lengths), emptied, overwritten, bytes flipped."
    flipped = bytearray(data); flipped[len(data) // 2] ^= 0xFF; flipped[len(data) // 3] ^= 0x55
    return {"truncated to half": data[:len(data) // 2], "truncated header": data[:20], "empty": b"",
            "garbage": b"\x93NUMPY not really" * 10, "zip of nothing": b"PK\x05\x06" + b"\0" * 18,
            "flipped bytes": bytes(flipped)}


def _same(a, b):
    for key in ("coef", "se", "z", "converged", "n_iter", "deviance"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("method", ["meanbr", "ml"])
def test_glm_blocks_interrupted_damaged_resumed(tmp_path, monkeypatch, method):
    Y, X = _toy()
    full = fit_voxelwise(Y, X, method=method, block_size=40, n_jobs=1)
    real, calls = glm._fit_block, []
    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3: raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the run
        return real(*args, **kwargs)
    folder = tmp_path / "blocks"
    monkeypatch.setattr(glm, "_fit_block", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        fit_voxelwise(Y, X, method=method, block_size=40, n_jobs=1, checkpoint_dir=folder)
    monkeypatch.setattr(glm, "_fit_block", real)
    written = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(written) == 2 and all(p.suffix == ".npz" for p in written)  # finished blocks only, nothing partial
    _same(fit_voxelwise(Y, X, method=method, block_size=40, n_jobs=1, checkpoint_dir=folder), full)
    last = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns)[-1]
    good = last.read_bytes()
    for name, damaged in _damages(good).items():
        last.write_bytes(damaged)
        try:
            again = fit_voxelwise(Y, X, method=method, block_size=40, n_jobs=1, checkpoint_dir=folder)
        except ValueError as e:  # a clear refusal: the module's message, the file and what to do
            assert "GLM block checkpoint" in str(e) and str(last) in str(e) and "delete it" in str(e), (name, e)
        else:
            _same(again, full)  # damage the reader cannot see must not change the result
    last.unlink()  # doing what the message says: only that block is refitted
    _same(fit_voxelwise(Y, X, method=method, block_size=40, n_jobs=1, checkpoint_dir=folder), full)
    with pytest.raises(ValueError, match="not a folder"):
        fit_voxelwise(Y, X, method=method, checkpoint_dir=last.parent / next(folder.iterdir()).name)


def _line(seed=0, n=50):
    rng = np.random.default_rng(seed)
    coords = np.argwhere(np.ones((4, 2, 1), bool))
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    Y = (X @ np.array([-0.5, 0.6]) + rng.standard_normal((len(coords), n)) > 0).T.astype(np.uint8)
    return Y, X, coords


def test_bsglmm_interrupted_damaged_resumed(tmp_path, monkeypatch):
    Y, X, coords = _line()
    kw = dict(n_samples=80, burn_in=20, chains=2, seed=3, progress=False, checkpoint_every=30)
    full = fit_bsglmm(Y, X, coords, **kw)
    ck = tmp_path / "chains.npz"
    def interrupt(chain, it, coef):
        if chain == 1 and it == 50: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit_bsglmm(Y, X, coords, checkpoint=ck, callback=interrupt, **kw)
    assert [p.name for p in tmp_path.iterdir()] == ["chains.npz"]
    good = ck.read_bytes()
    # a kill while the checkpoint is being rewritten leaves the previous one whole (written aside, then renamed)
    import neurocomp.lesions.bsglmm as bsglmm
    def killed_mid_write(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(bsglmm.np, "savez", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)
    monkeypatch.undo()
    assert ck.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["chains.npz"]
    resumed = fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)
    assert np.array_equal(resumed.draws, full.draws) and np.array_equal(resumed.coef, full.coef)
    for name, damaged in _damages(good).items():
        ck.write_bytes(damaged)
        try:
            again = fit_bsglmm(Y, X, coords, checkpoint=ck, **kw)
        except ValueError as e:
            assert "BSGLMM checkpoint" in str(e) and str(ck) in str(e) and "delete it" in str(e), (name, e)
        else:
            assert np.array_equal(again.coef, full.coef), name
    ck.write_bytes(good)
    with pytest.raises(ValueError, match="different data or settings"):
        fit_bsglmm(Y, X, coords, checkpoint=ck, **{**kw, "n_samples": 81})
