"The data manifest and the verified dataset cache: validation, import, fetch, verify, and the errors that protect the cache."
import hashlib
import pytest
from neurocomp import manifest as m


def _sha(text): return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def toy(tmp_path, monkeypatch):
    "A two-file dataset in a temporary folder, a manifest describing it, and an empty cache."
    monkeypatch.setenv("NEUROCOMP_DATA", str(tmp_path / "cache"))
    src = tmp_path / "src"; (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("alpha"); (src / "d" / "b (1).txt").write_text("beta")
    entry = {"kind": "external", "description": "toy", "access": "open", "licence": "CC0", "base_url": src.as_uri(),
             "files": [{"path": "a.txt", "sha256": _sha("alpha")}, {"path": "d/b (1).txt", "sha256": _sha("beta")}]}
    return src, {"toy": entry}


def test_real_manifest_is_valid_and_complete():
    manifest = m.load_manifest()
    for name in ("mni152_2009a", "aal2", "harvard_oxford", "kindalova2021", "ukb_brueggeman2020", "ukb_kindalova2021",
                 "adni_clinica_t1_volume", "aibl_clinica_t1_volume"):
        assert name in manifest
    assert all(entry["access"] and entry["licence"] for entry in manifest.values())
    kindalova = manifest["kindalova2021"]
    assert sum(f["path"].endswith("_T2_lesions_MNI_bin.nii.gz") for f in kindalova["files"]) == 1000 and kindalova["base_url"].startswith("https://")
    assert {25010, 25011, 25025, 31} <= set(manifest["ukb_brueggeman2020"]["fields"])
    assert {4080, 93, 21003, 31, 25000} <= set(manifest["ukb_kindalova2021"]["fields"])


def test_import_then_verify_and_list(toy):
    src, manifest = toy
    assert m.list_datasets(manifest).status.tolist() == ["missing"]
    with pytest.raises(m.DatasetNotAvailable, match="neurocomp data import toy"): m.dataset_dir("toy", manifest)
    root = m.import_dataset("toy", src, manifest)
    assert (root / "d" / "b (1).txt").read_text() == "beta" and m.verify_dataset("toy", manifest=manifest) == []
    assert m.list_datasets(manifest).status.tolist() == ["cached"]
    (root / "a.txt").write_text("tampered")
    assert m.verify_dataset("toy", manifest=manifest) == [f"checksum mismatch: {root / 'a.txt'}"]


def test_bad_checksum_and_missing_file_leave_nothing(toy):
    src, manifest = toy
    bad = {"toy": dict(manifest["toy"], files=[{"path": "a.txt", "sha256": _sha("other")}])}
    with pytest.raises(ValueError, match="checksum mismatch"): m.import_dataset("toy", src, bad)
    with pytest.raises(ValueError, match="checksum mismatch"): m.fetch_dataset("toy", bad)
    gone = {"toy": dict(manifest["toy"], files=[{"path": "nope.txt", "sha256": _sha("x")}])}
    with pytest.raises(ValueError, match="missing"): m.import_dataset("toy", src, gone)
    with pytest.raises(ConnectionError, match="could not download"): m.fetch_dataset("toy", gone)
    cache = m.data_dir()
    assert not (cache / "toy").exists()
    # the only thing allowed to remain is the hidden staging folder, and it holds no file with wrong bytes
    for p in cache.rglob("*"):
        if p.is_file(): assert ".toy.partial" in p.parts and m.file_sha256(p) in {_sha("alpha"), _sha("beta")}


def test_fetch_downloads_verifies_and_replaces_atomically(toy):
    src, manifest = toy
    root = m.fetch_dataset("toy", manifest)
    assert (root / "a.txt").read_text() == "alpha" and (root / ".verified").exists()
    assert sorted(p.name for p in m.data_dir().iterdir()) == ["toy"]
    (src / "a.txt").write_text("corrupted upstream")
    with pytest.raises(ValueError, match="checksum mismatch"): m.fetch_dataset("toy", manifest, force=True)
    assert (root / "a.txt").read_text() == "alpha"  # the good cached copy survives a failed refresh


def test_malformed_manifests(tmp_path):
    def write(text):
        p = tmp_path / "manifest.yml"; p.write_text(text); return p
    with pytest.raises(m.ManifestError, match="not valid YAML"): m.load_manifest(write("datasets: {a: [b"))
    with pytest.raises(m.ManifestError, match="'datasets' mapping"): m.load_manifest(write("version: 1"))
    with pytest.raises(m.ManifestError, match="lacks"): m.load_manifest(write("datasets: {a: {kind: external}}"))
    with pytest.raises(m.ManifestError, match="64-hex"):
        m.load_manifest(write("datasets: {a: {kind: external, description: d, access: o, licence: l, files: [{path: x}]}}"))
    with pytest.raises(m.ManifestError, match="generator"):
        m.load_manifest(write("datasets: {a: {kind: synthetic, description: d, access: o, licence: l}}"))
    with pytest.raises(KeyError, match="unknown dataset"): m.dataset_entry("no_such_dataset")


def test_restricted_and_embedded_datasets_cannot_be_fetched():
    with pytest.raises(ValueError, match="cannot be downloaded automatically"): m.fetch_dataset("ukb_kindalova2021")
    with pytest.raises(ValueError, match="nothing to fetch"): m.fetch_dataset("mni152_2009a")
    with pytest.raises(ValueError, match="no file list"): m.import_dataset("adni_clinica_t1_volume", ".")


def test_imported_kindalova2021_is_verified(kindalova2021):
    assert (kindalova2021 / ".verified").exists()
    assert (kindalova2021 / "results" / "MeanBR" / "coef_age_nvars_1_method_2.nii.gz").exists()
