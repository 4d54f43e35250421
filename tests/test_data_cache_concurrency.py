"""Issue 17, item 1: concurrent and interrupted `neurocomp data import` / `fetch` of one dataset never publish an incomplete
or foreign folder, and a rerun after a killed run succeeds. Real processes (the CLI), a local HTTP server for fetches."""
import functools, hashlib, http.server, os, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest, yaml
from neurocomp import manifest as m

N_FILES = 24
MARKER = ".verified"
# a child process running the CLI; SLOW_COPY seconds of sleep inside each file copy widen the race windows (fault injection)
CHILD = """
import os, shutil, sys, time
_copy, _delay = shutil.copyfile, float(os.environ.get("SLOW_COPY", "0"))
def _slow_copy(src, dst, **kw):
    time.sleep(_delay); return _copy(src, dst, **kw)
shutil.copyfile = _slow_copy
from neurocomp.cli import main
sys.exit(main(sys.argv[1:]))
"""


class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    delay = 0.0
    requests: list = []
    def do_GET(self):
        type(self).requests.append(self.path); time.sleep(type(self).delay); super().do_GET()
    def log_message(self, *args): pass


@pytest.fixture
def toy(tmp_path, monkeypatch):
    "A 24-file dataset in a folder served over HTTP on 127.0.0.1, a manifest file for it, and an empty cache."
    src = tmp_path / "src"
    files = []
    for i in range(N_FILES):
        rel = f"sub{i % 3}/file {i:02d}.nii.gz"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(os.urandom(2000 + 37 * i))
        files.append({"path": rel, "sha256": hashlib.sha256((src / rel).read_bytes()).hexdigest()})
    handler = type("Handler", (_SlowHandler,), {"delay": 0.0, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(src)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    entry = {"kind": "external", "description": "toy", "access": "open", "licence": "CC0",
             "base_url": f"http://127.0.0.1:{server.server_address[1]}/", "files": files}
    manifest_file = tmp_path / "manifest.yml"
    manifest_file.write_text(yaml.safe_dump({"version": 1, "datasets": {"toy": entry}}))
    monkeypatch.setenv("NEUROCOMP_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NEUROCOMP_MANIFEST", str(manifest_file))
    yield src, {"toy": entry}, handler
    server.shutdown(); server.server_close()


def _start(*argv, slow_copy=0.0):
    env = dict(os.environ, SLOW_COPY=str(slow_copy), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=120):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout + stderr))
    return out


class _Watcher(threading.Thread):
    "Polls the published folder; records any moment it holds a marker but not exactly the manifest's files."
    def __init__(self, root: Path, expected: set):
        super().__init__(daemon=True); self.root, self.expected, self.seen, self.bad, self.stop = root, expected | {MARKER}, 0, [], False
    def run(self):
        while not self.stop:
            try:
                before = os.stat(self.root).st_ino
                files = {Path(d, n).relative_to(self.root).as_posix() for d, _, names in os.walk(self.root) for n in names}
                same = os.stat(self.root).st_ino == before  # not swapped while listing: this folder really looked like that
            except FileNotFoundError: files, same = set(), False
            if same and MARKER in files:
                self.seen += 1
                if files != self.expected: self.bad.append(sorted(files ^ self.expected)[:4])
            time.sleep(0.005)


def _check_published(manifest, results, watcher=None):
    for rc, text in results: assert rc == 0, text
    if watcher is not None:
        watcher.stop = True; watcher.join()
        assert watcher.bad == [], f"an incomplete or foreign folder was published: {watcher.bad[:3]}"
    cache = m.data_dir()
    assert m.verify_dataset("toy", manifest=manifest) == [] and m.dataset_status("toy", manifest) == "cached"
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == ["toy"]  # no staging or set-aside folder left
    root = cache / "toy"  # exactly the manifest's files: nothing a killed run left (a half-copied temporary) was published
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == sorted({f["path"] for f in manifest["toy"]["files"]} | {MARKER})


def test_parallel_imports_never_publish_an_incomplete_copy(toy):
    src, manifest, _ = toy
    expected = {f["path"] for f in manifest["toy"]["files"]}
    for _round in range(2):  # the second round replaces a complete copy while others import
        watcher = _Watcher(m.data_dir() / "toy", expected); watcher.start()
        procs = []
        for i in range(3):
            procs.append(_start("data", "import", "toy", "--from", str(src), slow_copy=0.01)); time.sleep(0.3)
        _check_published(manifest, _finish(procs), watcher)


def test_parallel_fetches_download_once_and_publish_complete(toy):
    src, manifest, handler = toy
    handler.delay = 0.01
    watcher = _Watcher(m.data_dir() / "toy", {f["path"] for f in manifest["toy"]["files"]}); watcher.start()
    procs = []
    for i in range(3):
        procs.append(_start("data", "fetch", "toy")); time.sleep(0.2)
    _check_published(manifest, _finish(procs), watcher)
    assert len(handler.requests) == N_FILES  # the later runs waited, then found the dataset published


def _kill_when_staging(proc, cache: Path, min_files: int = 3, timeout: float = 60):
    "SIGKILL `proc` once a staging folder holds `min_files` files (mid-way through the copy)."
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        staged = [p for d in cache.glob(".toy*") if d.is_dir() for p in d.rglob("*") if p.is_file()]
        if len(staged) >= min_files: break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL); proc.wait()


@pytest.mark.parametrize("already_cached", [False, True])
def test_killed_import_publishes_nothing_and_a_rerun_succeeds(toy, already_cached):
    src, manifest, _ = toy
    if already_cached: _check_published(manifest, _finish([_start("data", "import", "toy", "--from", str(src))]))
    proc = _start("data", "import", "toy", "--from", str(src), slow_copy=0.03)
    _kill_when_staging(proc, m.data_dir())
    if already_cached: assert m.verify_dataset("toy", manifest=manifest) == []  # the earlier copy is untouched
    else:
        assert not (m.data_dir() / "toy").exists() and m.dataset_status("toy", manifest) == "missing"
        with pytest.raises(m.DatasetNotAvailable, match="not in the cache"): m.dataset_dir("toy", manifest)
    # the rerun must not pick up what the killed run left (a half-copied temporary): only the manifest's files
    _check_published(manifest, _finish([_start("data", "import", "toy", "--from", str(src))]))


def test_killed_fetch_publishes_nothing_and_a_rerun_succeeds(toy):
    src, manifest, handler = toy
    handler.delay = 0.03
    proc = _start("data", "fetch", "toy")
    _kill_when_staging(proc, m.data_dir())
    assert not (m.data_dir() / "toy").exists() and m.dataset_status("toy", manifest) == "missing"
    handler.delay = 0.0
    _check_published(manifest, _finish([_start("data", "fetch", "toy")]))


def test_a_copy_set_aside_by_a_run_killed_mid_swap_is_put_back(toy):
    "A run that dies between its two renames leaves the verified older copy aside: the next run restores it, no download."
    src, manifest, handler = toy
    root = m.import_dataset("toy", src, manifest)
    os.replace(root, m.data_dir() / ".toy~old-0badf00d")
    assert m.fetch_dataset("toy", manifest) == root and handler.requests == []
    _check_published(manifest, [])
