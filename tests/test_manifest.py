"The data manifest and the verified dataset cache: validation, import, fetch, verify, and the errors that protect the cache."
import hashlib, json, os, re, tempfile
from pathlib import Path
import pytest, yaml
from hypothesis import HealthCheck, given, settings, strategies as st
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


def _cache_names():
    "What the cache folder holds, lock files aside (they stay: removing a lock file races with its next holder)."
    return sorted(p.name for p in m.data_dir().iterdir() if not p.name.endswith(".lock"))


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
    assert _cache_names() == []  # neither the dataset nor any staging folder


def test_fetch_downloads_verifies_and_replaces_atomically(toy):
    src, manifest = toy
    root = m.fetch_dataset("toy", manifest)
    assert (root / "a.txt").read_text() == "alpha" and (root / ".verified").exists()
    assert _cache_names() == ["toy"]
    (src / "a.txt").write_text("corrupted upstream")
    with pytest.raises(ValueError, match="checksum mismatch"): m.fetch_dataset("toy", manifest, force=True)
    assert (root / "a.txt").read_text() == "alpha" and _cache_names() == ["toy"]  # the good copy survives a failed refresh


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
    assert m.dataset_status("kindalova2021") == "cached"


# --- issue 17, item 1: the cache never reports or serves a copy whose files fail verification -----------------------

def test_list_and_dataset_dir_do_not_trust_the_marker(toy):
    src, manifest = toy
    root = m.import_dataset("toy", src, manifest)
    os.utime(root / "a.txt", ns=(0, 0))  # touched, content unchanged: still good
    assert m.dataset_status("toy", manifest) == "cached" and m.dataset_dir("toy", manifest) == root
    (root / "d" / "b (1).txt").unlink()
    assert m.list_datasets(manifest).status.tolist() == ["damaged"]
    with pytest.raises(m.DatasetNotAvailable, match=r"fails verification: missing: .*b \(1\)\.txt"): m.dataset_dir("toy", manifest)
    m.import_dataset("toy", src, manifest)
    (root / "a.txt").write_text("ALPHA")  # same size, new content
    assert m.dataset_status("toy", manifest) == "damaged"
    with pytest.raises(m.DatasetNotAvailable, match="checksum mismatch"): m.dataset_dir("toy", manifest)
    m.import_dataset("toy", src, manifest)
    (root / "d" / "stray.nii.gz").write_text("not in the manifest")  # loaders that glob would read it
    assert m.dataset_status("toy", manifest) == "damaged"
    assert m.verify_dataset("toy", manifest=manifest) == [f"unexpected file: {root / 'd' / 'stray.nii.gz'}"]


def test_verify_rerecords_the_marker_and_old_markers_are_hashed(toy):
    src, manifest = toy
    root = m.import_dataset("toy", src, manifest)
    (root / ".verified").write_text("sha256 of every file verified when staged\n")  # an earlier version's marker
    assert m.dataset_status("toy", manifest) == "cached"
    (root / "a.txt").write_text("ALPHA")
    assert m.dataset_status("toy", manifest) == "damaged"
    (root / "a.txt").write_text("alpha")
    assert m.verify_dataset("toy", manifest=manifest) == []
    assert json.loads((root / ".verified").read_text())["files"]["a.txt"][0] == 5


def test_stray_files_of_dead_runs_are_never_published(toy):
    src, manifest = toy
    cache = m.data_dir()
    for stale in (cache / ".toy.partial", cache / ".toy~staging-0123456789ab"):  # the old staging name and the new one
        (stale / "d").mkdir(parents=True)
        (stale / "d" / ".b (1).txt.x1y2.tmp.txt").write_text("half-copied temporary of a killed run")
        (stale / "a.txt").write_text("alpha"); (stale / "stray.txt").write_text("?")
    root = m.import_dataset("toy", src, manifest)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [".verified", "a.txt", "d/b (1).txt"]
    assert _cache_names() == ["toy"]


# --- issue 17, item 9: checksum case and dataset names -----------------------------------------------------------------

def test_upper_case_checksums_are_normalised(toy, tmp_path):
    src, manifest = toy
    upper = {"toy": dict(manifest["toy"], files=[dict(f, sha256=f["sha256"].upper()) for f in manifest["toy"]["files"]])}
    assert m.verify_dataset("toy", src, upper) == []
    root = m.import_dataset("toy", src, upper)
    assert m.verify_dataset("toy", manifest=upper) == [] and m.dataset_dir("toy", upper) == root
    path = tmp_path / "m.yml"; path.write_text(yaml.safe_dump({"datasets": upper}))
    assert m.load_manifest(path)["toy"]["files"][0]["sha256"] == _sha("alpha")


@pytest.mark.parametrize("name", ["../escaped", "a/../../escaped", "sub/dir", "..", ".", ".hidden", "", "a\\b"])
def test_path_like_dataset_names_are_refused_before_any_write(toy, tmp_path, name):
    src, manifest = toy
    before = sorted(tmp_path.rglob("*"))
    for call in (lambda: m.import_dataset(name, src, {name: manifest["toy"]}), lambda: m.fetch_dataset(name, {name: manifest["toy"]}),
                 lambda: m.dataset_dir(name, {name: manifest["toy"]}), lambda: m.dataset_status(name, {name: manifest["toy"]})):
        with pytest.raises(m.ManifestError, match="not a plain folder name"): call()
    assert sorted(tmp_path.rglob("*")) == before
    path = tmp_path / "m.yml"; path.write_text(yaml.safe_dump({"datasets": {name: manifest["toy"]}}))
    with pytest.raises(m.ManifestError, match="not a plain folder name"): m.load_manifest(path)


# --- property-based: every generated manifest loads (normalised) or raises ManifestError --------------------------------

_PLAIN_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"  # a dataset name that is one folder inside the cache
_NAME = st.from_regex(_PLAIN_NAME, fullmatch=True)
_SEGMENT = st.text("abcXYZ019 ()_-.+", min_size=1, max_size=8).filter(lambda s: s not in (".", "..") and s != ".verified")
_PATH = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)
_SHA = st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)


def _entry(files):
    return {"kind": "external", "description": "d", "access": "open", "licence": "CC0", "files": files}


def _write_yaml(doc) -> Path:
    fd, path = tempfile.mkstemp(suffix=".yml"); os.close(fd)
    Path(path).write_text(yaml.safe_dump(doc)); return Path(path)


@settings(max_examples=40, deadline=None)
@given(datasets=st.dictionaries(_NAME, st.dictionaries(_PATH, _SHA, max_size=5), min_size=1, max_size=3))
def test_valid_manifests_load_with_lower_case_checksums(datasets):
    # paths where one is the folder of another are a conflict, tested apart
    paths_ok = all(not any(q.startswith(p + "/") for p in files for q in files) for files in datasets.values())
    doc = {"datasets": {n: _entry([{"path": p, "sha256": s} for p, s in files.items()]) for n, files in datasets.items()}}
    path = _write_yaml(doc)
    try:
        if not paths_ok:
            with pytest.raises(m.ManifestError, match="both as a file"): m.load_manifest(path)
            return
        loaded = m.load_manifest(path)
        assert set(loaded) == set(datasets)
        for n, files in datasets.items():
            assert {f["path"]: f["sha256"] for f in loaded[n]["files"]} == {p: s.lower() for p, s in files.items()}
            assert m.dataset_entry(n, doc["datasets"])["files"] == loaded[n]["files"]  # dict manifests get the same treatment
    finally: path.unlink()


_ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(_NAME, _ANY), fields=st.dictionaries(st.sampled_from(["kind", "files", "base_url", "source", "generator"]), _ANY),
       files=st.lists(st.one_of(_ANY, st.fixed_dictionaries({"path": st.one_of(_PATH, _ANY), "sha256": st.one_of(_SHA, _ANY)})), max_size=3),
       use_files=st.booleans())
def test_any_manifest_loads_or_raises_manifest_error(name, fields, files, use_files):
    entry = dict(_entry(files if use_files else []), **fields)
    try: path = _write_yaml({"datasets": {name: entry}})
    except (yaml.YAMLError, TypeError): return  # not representable in YAML (an unhashable key)
    try:
        try: loaded = m.load_manifest(path)
        except m.ManifestError as e: assert str(path) in str(e); return
        (name_, e), = loaded.items()
        assert re.fullmatch(_PLAIN_NAME, name_) and e["kind"] in m.KINDS
        for f in e.get("files") or []:
            assert len(f["sha256"]) == 64 and f["sha256"] == f["sha256"].lower() and not Path(f["path"]).is_absolute() and ".." not in f["path"].split("/")
    finally: path.unlink()


@settings(max_examples=40, deadline=None)
@given(blob=st.binary(max_size=200))
def test_any_bytes_load_or_raise_manifest_error(blob):
    fd, path = tempfile.mkstemp(suffix=".yml"); os.close(fd)
    try:
        Path(path).write_bytes(blob)
        try: m.load_manifest(path)
        except m.ManifestError: pass
    finally: os.unlink(path)


def test_a_cache_path_that_cannot_be_a_folder_is_a_clear_error(toy, monkeypatch, tmp_path):
    src, manifest = toy
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("NEUROCOMP_DATA", str(tmp_path / "file"))
    with pytest.raises(ValueError, match=r"NEUROCOMP_DATA\) cannot be written"): m.import_dataset("toy", src, manifest)
