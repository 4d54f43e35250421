"""The gallery in a browser: `neurocomp reproduce` output opened from disk in headless Chromium, offline. Its images
draw, and an interactive plotly page draws its plot (plotly.js is inside the page: no CDN). Screenshots go to the
test output folder. (`test_quick_gallery` does the same on the whole quick gallery; this one runs in seconds.)"""
import nbformat
import pytest
from neurocomp.reproduce import reproduce
import _browser

FIGURE = '''import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import plotly.graph_objects as go
from neurocomp.figures import save_figure, save_plotly
fig, ax = plt.subplots(figsize=(3, 2)); ax.plot(range(n))
save_figure(fig, "line", output_dir, params=dict(n=n))
save_plotly(go.Figure(go.Scatter(y=list(range(n)), mode="lines+markers")), "line_interactive", output_dir, params=dict(n=n))'''


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    _browser.require_chromium()  # before spending a kernel run
    folder = tmp_path_factory.mktemp("figures")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo Fig 1: a line\n> drawn twice, still and interactive"),
                nbformat.v4.new_code_cell('profile = "quick"\noutput_dir = "."\nseed = 0\ncohort = None\nn = 5', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(FIGURE)]
    nbformat.write(nb, folder / "demo_fig1_line.ipynb")
    out = tmp_path_factory.mktemp("gallery") / "out"
    results = reproduce(folder=folder, out=out, progress=False)
    assert [r.status for r in results] == ["ok"], results[0].error
    return out


def test_gallery_and_interactive_page_draw_offline(gallery):
    seen = _browser.check_gallery(gallery, "gallery-demo")
    assert seen["interactive"] == ["demo_fig1_line/line_interactive.html"] and seen["images"] == 1
