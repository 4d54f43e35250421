"The figure runner on tiny generated notebooks: failure reporting, skip-if-up-to-date, --force, and the gallery's provenance."
import json, os, subprocess, sys
import nbformat
import pytest
from neurocomp.cli import main
from neurocomp.reproduce import discover_figures, reproduce

PARAMS = 'profile = "quick"\noutput_dir = "."\nseed = 0\nn = 3'
SAVE = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nfrom neurocomp.figures import save_figure, save_table\n"
        "import pandas as pd\nfig, ax = plt.subplots(figsize=(2, 2)); ax.plot(range(n))\n"
        "save_figure(fig, 'line', output_dir, params=dict(n=n, seed=seed), inputs=[INPUT])\n"
        "save_table(pd.DataFrame({'n': [n], 'profile': [profile]}), 'numbers', output_dir)")


def _notebook(folder, name, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name} title\n> summary of {name}"),
                nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    data = folder / "input.txt"; data.write_text("an input file")
    _notebook(folder, "alpha_fig1_ok", [f"INPUT = {str(data)!r}", SAVE])
    _notebook(folder, "alpha_fig2_fails", ["x = 1", "y = x + 1\nraise ValueError('figure two is broken')", SAVE])
    _notebook(folder, "beta_table1_nothing", ["z = 1  # runs, but saves no output"])
    return folder


@pytest.fixture(scope="module")
def first_run(figures, tmp_path_factory):
    "`neurocomp reproduce` as a user runs it, in its own process (the kernels' stderr is the terminal's): out, status, stdout, stderr."
    out = tmp_path_factory.mktemp("run") / "out"
    env = dict(os.environ, NEUROCOMP_FIGURES=str(figures))
    run = subprocess.run([sys.executable, "-c", "import sys; from neurocomp.cli import main; sys.exit(main())",
                          "reproduce", "--out", str(out), "-p", "n=5", "--seed", "7"], capture_output=True, text=True, env=env, timeout=600)
    return out, run.returncode, run.stdout, run.stderr


@pytest.fixture(autouse=True)
def _figures_env(figures, monkeypatch):
    monkeypatch.setenv("NEUROCOMP_FIGURES", str(figures))


def test_registry(figures):
    specs = {s.id: s for s in discover_figures(figures)}
    assert set(specs) == {"alpha_fig1_ok", "alpha_fig2_fails", "beta_table1_nothing"}
    assert specs["alpha_fig1_ok"].paper == "alpha" and specs["alpha_fig1_ok"].title == "alpha_fig1_ok title"


def test_failure_is_reported_and_others_run(first_run, figures):
    out, status, _, _ = first_run
    assert status == 1
    stamp = json.loads((out / "alpha_fig2_fails.failed" / ".stamp.json").read_text())
    assert stamp["status"] == "failed"
    error = stamp["error"]
    assert str(figures / "alpha_fig2_fails.ipynb") in error and "ValueError: figure two is broken" in error
    assert "raise ValueError('figure two is broken')" in error and "cell 4" in error  # the injected-parameters cell counts
    assert "saved no output" in json.loads((out / "beta_table1_nothing.failed" / ".stamp.json").read_text())["error"]
    ok = out / "alpha_fig1_ok"
    assert (ok / "line.png").exists() and (ok / "numbers.csv").exists() and (ok / "alpha_fig1_ok.ipynb").exists()
    executed = nbformat.read(ok / "alpha_fig1_ok.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "n = 5" in injected.source and "seed = 7" in injected.source and "output_dir" in injected.source


def test_gallery_has_provenance(first_run, figures):
    out, *_ = first_run
    page = (out / "index.html").read_text()
    for text in ["alpha_fig1_ok title", "alpha_fig1_ok/line.png", "alpha_fig1_ok/numbers.html", "FAILED",
                 "figure two is broken", "saved no output", "git commit", "run time", "package versions", "&quot;n&quot;: 5",
                 str(figures / "input.txt")]:
        assert text in page, text
    outputs = json.loads((out / "alpha_fig1_ok" / "outputs.json").read_text())
    assert list(outputs["line"]["provenance"]["inputs"].values())[0] == __import__("hashlib").sha256(b"an input file").hexdigest()


def test_up_to_date_is_skipped_and_force_reruns(first_run, figures):
    out, *_ = first_run
    before = (out / "alpha_fig1_ok" / "line.png").stat().st_mtime_ns
    again = reproduce(only=["alpha_fig1_ok"], out=out, params={"n": 5}, seed=7, progress=False)
    assert [r.status for r in again] == ["skipped"] and (out / "alpha_fig1_ok" / "line.png").stat().st_mtime_ns == before
    changed = reproduce(only=["alpha_fig1_ok"], out=out, params={"n": 6}, seed=7, progress=False)
    assert [r.status for r in changed] == ["ok"]
    forced = reproduce(only=["alpha"], out=out, params={"n": 6}, seed=7, force=True, progress=False)
    assert [r.status for r in forced] == ["ok", "failed"]
    # a failed rerun keeps the last good outputs of other figures and the gallery still lists all three
    assert (out / "alpha_fig1_ok" / "line.png").exists() and (out / "beta_table1_nothing.failed").exists()


def test_a_run_is_quiet_and_ends_with_the_gallery_path(first_run, figures):
    "As a user sees it in a terminal: one progress bar, no kernel transport warnings, failures named, then the summary."
    out, status, stdout, stderr = first_run
    assert "without encryption" not in stderr and "WARNING" not in stderr, stderr
    assert "Executing" not in stderr  # papermill's own per-cell bar stays off: ours is the only one
    bars = {line.split(":")[0].strip() for line in stderr.replace("\r", "\n").splitlines() if "fig/s" in line or "s/fig" in line}
    assert bars == {"figures"}, stderr
    assert f"FAILED alpha_fig2_fails: {figures / 'alpha_fig2_fails.ipynb'}: cell 4" in stderr
    summary = stdout.strip().splitlines()[-1]
    assert summary == f"1 ran, 0 up to date, 2 failed · gallery: {(out / 'index.html').resolve()}", stdout


def test_unwritable_output_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"; blocker.write_text("not a folder")
    status = main(["reproduce", "--out", str(blocker / "gallery")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"neurocomp: error: cannot write the output folder {blocker / 'gallery'}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
