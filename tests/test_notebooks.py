"Run every method notebook (not the figure notebooks, which `test_reproduce` runs through papermill) with nbdev's test runner."
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_nbdev_tests

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(notebook, monkeypatch):
    monkeypatch.chdir(NBS)
    ok, seconds = run_nbdev_tests(notebook, skip_flags=["notest", "slow"], force_flags=[], do_print=False, basepath=NBS)
    assert ok, f"{notebook.name} failed (re-run: nbdev_test --path {notebook})"
