"""The whole quick gallery: every registered figure notebook runs under `neurocomp reproduce --profile quick` and produces
its outputs; the gallery then opens offline in headless Chromium, images and an interactive page drawn (screenshots in
the test output folder)."""
import json
import pytest
from neurocomp.cli import main
from neurocomp.reproduce import discover_figures
import _browser


@pytest.fixture(scope="module")
def quick_gallery(tmp_path_factory):
    specs = discover_figures()
    assert specs, "no figure notebooks registered in nbs/figures"
    out = tmp_path_factory.mktemp("quick") / "gallery"
    status = main(["reproduce", "--profile", "quick", "--out", str(out)])
    return specs, out, status


def test_quick_gallery(quick_gallery):
    specs, out, status = quick_gallery
    failed = {s.id: json.loads((out / f"{s.id}.failed" / ".stamp.json").read_text())["error"]
              for s in specs if (out / f"{s.id}.failed").exists()}
    assert not failed, "figures failed:\n" + "\n\n".join(f"{k}: {v}" for k, v in failed.items())
    assert status == 0
    page = (out / "index.html").read_text()
    for spec in specs:
        outputs = json.loads((out / spec.id / "outputs.json").read_text())
        assert outputs, f"{spec.id} saved no outputs"
        for name, record in outputs.items():
            for f in record["files"]: assert (out / spec.id / f).stat().st_size > 0, f"{spec.id}: {f} empty or missing"
            assert record["provenance"]["versions"]["neurocomp"] and "git_commit" in record["provenance"]
        assert spec.id in page and (out / spec.id / f"{spec.id}.ipynb").exists()


def test_quick_gallery_in_a_browser(quick_gallery):
    _, out, _ = quick_gallery
    seen = _browser.check_gallery(out, "gallery")
    assert seen["images"] > 10 and seen["interactive"]
