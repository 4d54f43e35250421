"""Figure notebooks without `neurocomp reproduce`: each has exactly one `parameters` cell declaring the common contract
(`profile`, `seed`, `output_dir`, `cohort`), and one runs with plain `papermill IN OUT -p profile quick -p output_dir DIR`."""
import ast, json, re, shutil, subprocess, sys
from pathlib import Path
import nbformat
import pytest
from neurocomp.reproduce import figures_dir

FIGURES = sorted(p for p in figures_dir().glob("*.ipynb") if not p.name.startswith(("_", ".")))
CONTRACT = {"profile": "quick", "seed": 0, "output_dir": ".", "cohort": None}
CHEAP = "neurocomp_templates_overview"  # seconds once the working-grid templates are cached (the 01_data tests do it)


def _assigned(source: str) -> dict:
    "Names assigned in a cell, with their literal values (non-literals as the marker `...`)."
    out = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
        for target in targets:
            if isinstance(target, ast.Name):
                try: out[target.id] = ast.literal_eval(node.value)
                except ValueError: out[target.id] = ...
    return out


@pytest.mark.parametrize("notebook", FIGURES, ids=[p.stem for p in FIGURES])
def test_one_parameters_cell_with_the_contract(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{notebook.name}: {len(cells)} cells tagged 'parameters' (exactly one: papermill injects after the first)"
    assert cells[0].cell_type == "code"
    declared = _assigned(cells[0].source)
    wrong = {k: declared.get(k, "<missing>") for k, v in CONTRACT.items() if k not in declared or declared[k] != v}
    assert not wrong, f"{notebook.name}: the parameters cell must declare {CONTRACT}; differs in {wrong}"


def test_plain_papermill_runs_a_figure(tmp_path):
    papermill = shutil.which("papermill")
    assert papermill, "papermill's command is not installed (it comes with the package's requirements)"
    notebook = figures_dir() / f"{CHEAP}.ipynb"
    out = tmp_path / "out"
    run = subprocess.run([papermill, str(notebook), str(tmp_path / "executed.ipynb"), "-p", "profile", "quick", "-p", "output_dir", str(out),
                          "--no-progress-bar"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    outputs = json.loads((out / "outputs.json").read_text())
    assert {o["kind"] for o in outputs.values()} >= {"figure", "table", "interactive"}
    for record in outputs.values():
        for f in record["files"]: assert (out / f).stat().st_size > 0, f
        assert record["provenance"]["params"]["profile"] == "quick"
    interactive = next(out / r["files"][0] for r in outputs.values() if r["kind"] == "interactive")
    assert not re.search(r"<script[^>]*\bsrc=[\"']https?:", interactive.read_text()), "the interactive page fetches a script"
