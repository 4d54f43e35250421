"Bad input to the figure writers (`neurocomp.figures`) and to the phantom deformations (`neurocomp.phantoms.deformation`)."
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from neurocomp.figures import save_figure, save_plotly, save_table
from neurocomp.phantoms.deformation import random_displacement, warp_image, warp_labels


@pytest.fixture
def mpl_fig():
    fig, ax = plt.subplots(); ax.plot([0, 1], [0, 1])
    yield fig
    plt.close(fig)


def _writers(mpl_fig):
    return {"save_figure": lambda name, out: save_figure(mpl_fig, name, out),
            "save_plotly": lambda name, out: save_plotly(go.Figure(go.Scatter(y=[1, 2])), name, out),
            "save_table": lambda name, out: save_table(pd.DataFrame({"a": [1.0]}), name, out)}


@pytest.mark.parametrize("writer", ["save_figure", "save_plotly", "save_table"])
@pytest.mark.parametrize("name", ["../escaped", "sub/fig", "..", ".", "", ".hidden", "a\\b", "ABSOLUTE"])
def test_names_must_be_plain_file_names(tmp_path, mpl_fig, writer, name):
    out = tmp_path / "a" / "out"
    if name == "ABSOLUTE": name = str(tmp_path / "elsewhere" / "fig")  # absolute, but inside tmp_path even when it escapes
    with pytest.raises(ValueError, match="plain file name"): _writers(mpl_fig)[writer](name, out)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written  # nothing inside output_dir, nothing escaped it


def test_plain_names_still_work(tmp_path, mpl_fig):
    for writer in _writers(mpl_fig).values(): writer("fig4_region-ranks.v2", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"fig4_region-ranks.v2.png", "fig4_region-ranks.v2.html",
                                                   "fig4_region-ranks.v2.csv", "outputs.json"}


def test_save_table_refuses_non_dataframes(tmp_path):
    with pytest.raises(TypeError, match="DataFrame, got list"): save_table([[1, 2], [3, 4]], "tab", tmp_path)
    with pytest.raises(TypeError, match="DataFrame, got dict"): save_table({"a": [1]}, "tab", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_plotly_refuses_non_plotly(tmp_path, mpl_fig):
    with pytest.raises(TypeError, match="write_html"): save_plotly(mpl_fig, "page", tmp_path)


@pytest.mark.parametrize("writer", ["save_figure", "save_plotly", "save_table"])
def test_uncreatable_output_dir_is_named(tmp_path, mpl_fig, writer):
    blocker = tmp_path / "not_a_folder"; blocker.write_text("")
    for out in (blocker, blocker / "sub"):  # an existing file, and a folder below a file
        with pytest.raises(OSError, match="not_a_folder") as info: _writers(mpl_fig)[writer]("x", out)
        assert "output_dir" in str(info.value) and type(info.value).__name__ == "UnwritableOutputError"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("writer", ["save_figure", "save_plotly", "save_table"])
def test_read_only_output_dir_is_named(tmp_path, mpl_fig, writer):
    out = tmp_path / "read_only"; out.mkdir(); out.chmod(0o500)
    try:
        with pytest.raises(OSError, match="read_only.*output_dir"): _writers(mpl_fig)[writer]("x", out)
    finally: out.chmod(0o700)


def test_write_failure_is_named(tmp_path, mpl_fig, monkeypatch):
    "A failure while writing (disk full, say) names the folder too, and leaves no temporary file behind."
    def full(*args, **kwargs): raise OSError(28, "No space left on device")
    monkeypatch.setattr(mpl_fig, "savefig", full)
    with pytest.raises(OSError, match=f"{tmp_path.name}.*No space left") as info: save_figure(mpl_fig, "x", tmp_path)
    assert type(info.value).__name__ == "UnwritableOutputError" and list(tmp_path.iterdir()) == []


def test_corrupt_outputs_index_is_named(tmp_path):
    (tmp_path / "outputs.json").write_text("{not json")
    with pytest.raises(ValueError, match="outputs.json"): save_table(pd.DataFrame({"a": [1]}), "tab", tmp_path)


GOOD = dict(shape=(12, 14, 10), voxel_size_mm=4.0, smoothness_mm=8.0, amplitude_mm=2.0, seed=0)


@pytest.mark.parametrize("bad", [dict(amplitude_mm=np.nan), dict(amplitude_mm=np.inf), dict(amplitude_mm=-0.5),
                                 dict(smoothness_mm=0.0), dict(smoothness_mm=-3), dict(smoothness_mm=np.nan),
                                 dict(smoothness_mm=np.inf), dict(voxel_size_mm=0), dict(voxel_size_mm=np.nan),
                                 dict(shape=(12, 14)), dict(shape=(12, 14, 10, 2)), dict(shape=(12, 0, 10)),
                                 dict(shape=(12, -1, 10)), dict(shape=(12.5, 14, 10)), dict(shape=12)])
def test_random_displacement_validates(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name): random_displacement(**{**GOOD, **bad})


def test_random_displacement_good_parameters():
    u = random_displacement(**GOOD)
    assert u.shape == (3, 12, 14, 10) and np.isfinite(u).all()
    assert np.array_equal(u, random_displacement(**{**GOOD, "shape": np.array([12, 14, 10])}))  # numpy ints are fine
    assert not random_displacement(**{**GOOD, "amplitude_mm": 0}).any()


def test_random_displacement_refuses_huge_grids():
    with pytest.raises(MemoryError, match="displacement field"): random_displacement((100_000, 100_000, 100_000), 1.0)


def test_warps_validate_shapes_and_scale():
    u = random_displacement(**GOOD)
    img = np.ones(GOOD["shape"], np.float32); labels = np.ones(GOOD["shape"], np.int8)
    for warp, volume in ((warp_image, img), (warp_labels, labels)):
        with pytest.raises(ValueError, match="displacement has shape"): warp(volume, u[:, :-1])
        with pytest.raises(ValueError, match="displacement has shape"): warp(volume[:-1], u)
        with pytest.raises(ValueError, match="displacement has shape"): warp(volume, u[0])
        with pytest.raises(ValueError, match="3D"): warp(volume[0])
        with pytest.raises(ValueError, match="scale"): warp(volume, u, scale=0)
        with pytest.raises(ValueError, match="scale"): warp(volume, u, scale=np.nan)
        with pytest.raises(ValueError, match="NaN"): warp(volume, np.where(u > 0, np.nan, u))
    with pytest.raises(ValueError, match="order"): warp_image(img, u, order=7)
    with pytest.raises(TypeError, match="integer"): warp_labels(img, u)
    assert warp_image(img, u).shape == img.shape and warp_labels(labels, u).dtype == np.int8
