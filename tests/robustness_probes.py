#!/usr/bin/env python
"""Robustness probes (issue 17): about 125 calls that a hostile but realistic user makes, across the CLI and the public
APIs, each run under a time limit and classified. Not collected by pytest (no `test_` prefix); run it by hand:

    python tests/robustness_probes.py                    # every probe; prints counts + the non-clear ones, writes JSON
    python tests/robustness_probes.py --json OUT.json    # where to write the report (default robustness_report.json)
    python tests/robustness_probes.py --only glm cohorts # probes whose id contains one of these words
    python tests/robustness_probes.py --compare OLD.json # also list the probes whose category changed since OLD.json
                                                         # (tests/robustness_baseline.json: the code before the issue 17 fixes)
    python tests/robustness_probes.py --list             # the probes, with what each expects

Categories:
- clear error: a ValueError/TypeError/LookupError/OSError/MemoryError raised by neurocomp whose message names the problem
  (each probe lists the words a clear message contains; the CLI: non-zero exit, one line, no traceback);
- handled correctly: a valid result, checked by the probe (each probe defines the right outcome);
- confusing error: raised by neurocomp but of an unexpected type, without the words that name the problem, a wrong
  advice, or a refusal of a valid input;
- raw traceback: an exception raised inside a library (numpy, torch, zipfile, pandas, pathlib...) that neurocomp let
  through, or a traceback printed by the CLI;
- silently wrong: a result that the probe shows to be wrong, or bad input accepted without an error;
- data lost: an earlier good output or dataset destroyed or replaced by an incomplete one;
- hung: no answer within the probe's time limit;
- skipped (API moved): the probe's target function or parameter does not exist in this version;
- skipped (no data): the probe needs a dataset that is not on this machine;
- probe error: a bug of the probe itself (should be zero).

Probes run in a worker subprocess (one, restarted after a hang or a crash) with an address-space limit (so a
runaway allocation fails instead of swapping the machine), one BLAS/numba thread, and a fresh temporary folder each;
NEUROCOMP_DATA and NEUROCOMP_CACHE point into temporary folders: nothing outside them is written.
"""
from __future__ import annotations

import argparse, contextlib, functools, gzip, hashlib, http.server, importlib, inspect, json, os, select, shutil, signal
import subprocess, sys, tempfile, textwrap, threading, time, traceback
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
KINDALOVA_SOURCE = Path(os.environ.get("NEUROCOMP_KINDALOVA_SOURCE", "/work/shared/data/kindalova2021"))

CLEAR, HANDLED, CONFUSING, RAW = "clear error", "handled correctly", "confusing error", "raw traceback"
SILENT, LOST, HUNG = "silently wrong", "data lost", "hung"
SKIPPED_API, SKIPPED_DATA, PROBE_ERROR = "skipped (API moved)", "skipped (no data)", "probe error"
CATEGORIES = (CLEAR, HANDLED, CONFUSING, RAW, SILENT, LOST, HUNG, SKIPPED_API, SKIPPED_DATA, PROBE_ERROR)
CLEAR_TYPES = (ValueError, TypeError, LookupError, OSError, MemoryError, NotImplementedError)


# --------------------------------------------------------------------------------------------------------------------
# verdicts a probe body raises, and the registry
# --------------------------------------------------------------------------------------------------------------------
class Wrong(Exception): "The call returned, but its result is wrong (or bad input was accepted)."
class Lost(Exception): "Earlier good data were destroyed."
class Moved(Exception): "The probe's target does not exist in this version."
class Confusing(Exception): "The call failed with a message that does not name the problem (the probe says why)."
class NoData(Exception): "The probe needs data that are not on this machine."
class ProbeTimeout(BaseException): "Raised by the alarm when a probe overruns its time limit."


class CLIFailure(Exception):
    "A CLI run that exited non-zero: its output is classified (traceback or not, words named)."
    def __init__(self, rc, output):
        super().__init__(output.strip().splitlines()[-1] if output.strip() else f"exit status {rc}")
        self.rc, self.output = rc, output


@dataclass
class Probe:
    id: str
    area: str
    what: str
    expect: str   # "error": bad input, a clear error is right; "result": valid input, a checked result is right; "either"
    names: tuple  # what a clear message contains (case-insensitive): any one entry; an entry that is a tuple needs all its words
    fn: object
    timeout: float


PROBES: list[Probe] = []


def probe(area: str, what: str, expect: str = "error", names=(), timeout: float = 60):
    "Register a probe: `what` it does, what it `expect`s, and the `names` a clear error message must contain."
    assert expect in ("error", "result", "either")
    def register(fn):
        PROBES.append(Probe(f"{area}.{fn.__name__}", area, what, expect, tuple(names), fn, timeout))
        return fn
    return register


# --------------------------------------------------------------------------------------------------------------------
# tolerant access to the public API
# --------------------------------------------------------------------------------------------------------------------
ALIASES = {"checkpoint_path": ("checkpoint",), "checkpoint_dir": ("checkpoint",), "checkpoint": ("checkpoint_path", "checkpoint_dir"),
           "mask": ("mask_img",), "mask_img": ("mask",), "n_threads": ("n_jobs",)}


def api(*targets: str):
    "The first of `module:attr` targets that exists; else `Moved` (the probe is skipped)."
    for target in targets:
        module, _, attr = target.partition(":")
        try: obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name): continue  # the module itself is gone
            raise
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part, None)
            if obj is None: break
        if obj is not None: return obj
    raise Moved(f"none of {list(targets)} exists")


def call(fn, *args, **kwargs):
    "Call `fn`, renaming keyword arguments to their current names (checkpoint_path → checkpoint...); Moved if one has no home."
    try: params = inspect.signature(fn).parameters
    except (TypeError, ValueError): return fn(*args, **kwargs)
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    renamed = {}
    for key, value in kwargs.items():
        if key in params: renamed[key] = value; continue
        alias = next((a for a in ALIASES.get(key, ()) if a in params), None)
        if alias: renamed[alias] = value
        elif var_kw and key not in ALIASES: renamed[key] = value
        else: raise Moved(f"{getattr(fn, '__qualname__', fn)} has no parameter {key!r} (nor {ALIASES.get(key, ())})")
    return fn(*args, **renamed)


def field(obj, *names):
    "The first attribute of `obj` among `names` (results renamed their fields over time)."
    for n in names:
        if hasattr(obj, n): return getattr(obj, n)
    raise Moved(f"{type(obj).__name__} has none of {names}")


# --------------------------------------------------------------------------------------------------------------------
# small inputs
# --------------------------------------------------------------------------------------------------------------------
def rng(seed=0):
    import numpy as np
    return np.random.default_rng(seed)


def lesion_problem(n=40, v=24, seed=0):
    "A small voxel-wise problem: Y (n, v) uint8 with a real age effect, X = [1, age_c, sex]."
    import numpy as np
    from scipy.stats import norm
    g = rng(seed)
    age = g.normal(0, 1, n); sex = g.integers(0, 2, n).astype(float)
    X = np.c_[np.ones(n), age, sex]
    beta = np.c_[np.full(v, -0.8), np.linspace(0, 0.8, v), np.zeros(v)]
    Y = (g.random((n, v)) < norm.cdf(X @ beta.T)).astype(np.uint8)
    return Y, X


def write_nifti(path, data, affine=None):
    import nibabel as nib, numpy as np
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def lesion_masks(folder, n=30, shape=(6, 6, 6), seed=0, affine=None):
    "n binary 3D lesion masks (lesions in a central box, more with age) and their covariates table."
    import numpy as np, pandas as pd
    g = rng(seed)
    age = g.uniform(45, 80, n); sex = g.integers(0, 2, n)
    paths = []
    centre = tuple(slice(1, s - 1) for s in shape)
    for i in range(n):
        data = np.zeros(shape, np.uint8)
        p = 0.15 + 0.4 * (age[i] - 45) / 35
        data[centre] = g.random(data[centre].shape) < p
        paths.append(write_nifti(Path(folder) / f"sub-{i + 1:02d}_mask.nii.gz", data, affine))
    return paths, pd.DataFrame({"age": age, "sex": sex, "bp": g.normal(130, 15, n)})


def truncate(path, keep=0.5):
    "Cut a file to a fraction of its bytes (a copy interrupted half-way)."
    data = Path(path).read_bytes(); Path(path).write_bytes(data[: int(len(data) * keep)])


def reference_maps(shape=(10, 10, 10)):
    "A small ReferenceMaps: brain in the middle, uniform incidence, a negative intercept and a small age slope."
    import numpy as np
    ReferenceMaps = api("neurocomp.lesions.simulate:ReferenceMaps")
    brain = np.zeros(shape, bool); brain[2:-2, 2:-2, 2:-2] = True
    return ReferenceMaps(intercept=np.where(brain, -1.5, 0.0), age=np.where(brain, 0.02, 0.0),
                         incidence=np.where(brain, 0.1, 0.0), brain_mask=brain, affine=np.diag([2.0, 2, 2, 1]),
                         age_range=(45.0, 80.0), age_mean=62.0, name="probe")


def tiny_net(n_out=2, inputs=27, seed=0):
    import torch
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(inputs, n_out))


def tiny_data(n=32, seed=0, shape=(3, 3, 3)):
    "Images (n, 1, *shape) with a learnable class signal, and integer labels."
    import torch
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, *shape, generator=g) + y.view(-1, 1, 1, 1, 1).float()
    return x, y


def train(net, train_data, val_data, **kw):
    import torch
    train_model = api("neurocomp.training:train_model")
    kw = {"epochs": 2, "device": "cpu", "progress": False, "lr": 1e-2, **kw}
    return call(train_model, net, train_data, val_data, kw.pop("loss_fn", torch.nn.CrossEntropyLoss()), **kw)


def mask_model(n_out=2, shape=(6, 6, 6)):
    "A frozen linear 'classifier' on (1, *shape) images whose class 1 logit grows with the central grey matter."
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(torch.tensor(shape).prod()), n_out))
    with torch.no_grad():
        w = torch.zeros(shape); w[2:4, 2:4, 2:4] = 1.0
        net[1].weight.zero_(); net[1].bias.zero_()
        net[1].weight[-1] = w.flatten()
        if n_out > 1: net[1].bias[0] = 4.0
    return net.eval()


def mask_images(n=6, shape=(6, 6, 6), seed=0):
    import numpy as np
    return np.clip(rng(seed).uniform(0.3, 1.0, (n, *shape)), 0, 1).astype(np.float32)


def optimize(model, images, **kw):
    optimize_mask = api("neurocomp.perturbation.masks:optimize_mask")
    kw = {"target_class": 1, "lambda1": 1e-3, "lambda2": 1e-2, "beta1": 0.5, "beta2": 1.0, "max_epochs": 3,
          "only_correct": False, "device": "cpu", **kw}
    return call(optimize_mask, model, images, **kw)


def bsglmm_problem(n=30, side=3, seed=0):
    import numpy as np
    Y, X = lesion_problem(n=n, v=side ** 3, seed=seed)
    coords = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)])
    return Y, X[:, :2], coords


def bsglmm(Y, X, coords, **kw):
    fit_bsglmm = api("neurocomp.lesions.bsglmm:fit_bsglmm")
    kw = {"n_samples": 20, "burn_in": 10, "device": "cpu", "progress": False, **kw}
    return call(fit_bsglmm, Y, X, coords, **kw)


def bids_lesions(root, n=8, shape=(6, 6, 6), seed=0, participants=None):
    "A BIDS lesion dataset ROOT/sub-XX/anat/sub-XX_mask.nii.gz with participants.tsv."
    import numpy as np, pandas as pd
    g = rng(seed); root = Path(root)
    for i in range(n):
        data = (g.random(shape) < 0.2).astype(np.uint8)
        write_nifti(root / f"sub-{i + 1:02d}" / "anat" / f"sub-{i + 1:02d}_mask.nii.gz", data)
    table = participants if participants is not None else pd.DataFrame(
        {"participant_id": [f"sub-{i + 1:02d}" for i in range(n)], "age": g.uniform(45, 80, n).round(1), "sex": g.integers(0, 2, n)})
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def load_bids(root):
    "Load a BIDS lesion cohort with whatever loader this version has."
    try: loader = api("neurocomp.cohorts:load_bids_lesion_cohort")
    except Moved: return call(api("neurocomp.cohorts:load_cohort"), root, layout="bids", suffix="mask")
    return loader(root)


def caps_cohort(root, n=4, seed=0, modulated=False, tweak=None):
    "A Clinica CAPS t1-volume folder (1.5 mm Ixi549Space grid) with labels.tsv; `tweak(i, data)` edits image i.\n\n    Each map is in normalized_space (the layout named by the shared API) and hard-linked under dartel/group-AD (the\n    layout of earlier versions), so either loader finds it."
    import numpy as np, pandas as pd
    grid = api("neurocomp.data:working_grid")(1.5)
    g = rng(seed); root = Path(root); rows = []
    for i in range(n):
        sub, ses = f"sub-ADNI{i:03d}", "ses-M00"
        data = np.zeros(grid.shape, np.float32); data[40:80, 50:90, 40:80] = g.uniform(0, 1, (40, 40, 40))
        if tweak: tweak(i, data)
        name = f"{sub}_{ses}_T1w_segm-graymatter_space-Ixi549Space_modulated-{'on' if modulated else 'off'}_probability.nii.gz"
        path = write_nifti(root / "subjects" / sub / ses / "t1/spm/segmentation/normalized_space" / name, data, grid.affine)
        (root / "subjects" / sub / ses / "t1/spm/dartel/group-AD").mkdir(parents=True, exist_ok=True)
        os.link(path, root / "subjects" / sub / ses / "t1/spm/dartel/group-AD" / name)
        rows.append({"participant_id": sub, "session_id": ses, "diagnosis": ["CN", "AD"][i % 2], "age": 70 + i, "sex": "MF"[i % 2]})
    pd.DataFrame(rows).to_csv(root / "labels.tsv", sep="\t", index=False)
    return root


def load_caps(root, old_default=False):
    "Load a CAPS cohort: `load_caps_cohort`, else (earlier versions) `load_cohort(layout='caps')` for non-modulated maps,\n    or with its default (modulated maps) when `old_default`."
    try: loader = api("neurocomp.cohorts:load_caps_cohort")
    except Moved:
        extra = {} if old_default else {"modulated": False}
        return call(api("neurocomp.cohorts:load_cohort"), root, layout="caps", phenotypes=Path(root) / "labels.tsv", **extra)
    return loader(root)


def cohort_arrays(cohort):
    "Every image of a cohort as arrays, through whichever accessor this version has."
    import numpy as np
    if hasattr(cohort, "array"): return [cohort.array(i) for i in range(len(cohort))]
    if hasattr(cohort, "load_image"): return [np.asarray(cohort.load_image(i).dataobj) for i in range(len(cohort))]
    if hasattr(cohort, "to_array"): return list(cohort.to_array())
    raise Moved("Cohort has no array/load_image/to_array")


# --------------------------------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------------------------------
CLI = "import sys; from neurocomp.cli import main; sys.exit(main(sys.argv[1:]))"
SLOW_CLI = ("import os, shutil, sys, time\n_c = shutil.copyfile\n"
            "def _slow(s, d, **k):\n    time.sleep(float(os.environ.get('SLOW_COPY', '0'))); return _c(s, d, **k)\n"
            "shutil.copyfile = _slow\nfrom neurocomp.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def cli_env(tmp, **extra):
    env = dict(os.environ, NEUROCOMP_DATA=str(Path(tmp) / "cache"), PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli(tmp, *args, env=None, timeout=120, code=CLI, check=True):
    "Run `neurocomp ARGS`; a non-zero exit raises CLIFailure (classified), unless check=False."
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env or cli_env(tmp), capture_output=True,
                          text=True, timeout=timeout, cwd=tmp)
    if check and proc.returncode != 0: raise CLIFailure(proc.returncode, proc.stdout + proc.stderr)
    return proc


def start_cli(tmp, *args, env=None, code=CLI):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env or cli_env(tmp), cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def toy_dataset(tmp, n_files=12, name="toy", upper=False, base_url=None, extra=None):
    "A small external dataset in TMP/src and a manifest file for it; returns (src, manifest_path, entry)."
    import yaml
    src = Path(tmp) / "src"; files = []
    for i in range(n_files):
        rel = f"d{i % 2}/f{i:02d}.bin"; p = src / rel; p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(1000 + i))
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        files.append({"path": rel, "sha256": sha.upper() if upper else sha})
    entry = {"kind": "external", "description": "probe", "access": "open", "licence": "CC0",
             "base_url": base_url or src.as_uri() + "/", "files": files}
    manifest = Path(tmp) / "manifest.yml"
    manifest.write_text(yaml.safe_dump({"version": 1, "datasets": {name: entry, **(extra or {})}}))
    return src, manifest, entry


def published_files(root):
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def kindalova_source():
    if not (KINDALOVA_SOURCE / "data").is_dir(): raise NoData(f"{KINDALOVA_SOURCE} (set NEUROCOMP_KINDALOVA_SOURCE)")
    return KINDALOVA_SOURCE


def kindalova_listing():
    entry = api("neurocomp.manifest:dataset_entry")("kindalova2021")
    return sorted(f["path"] for f in entry["files"])


@contextlib.contextmanager
def http_server(folder, delay=0.0):
    "Serve `folder` on 127.0.0.1 (each request delayed), yielding the base URL."
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self): time.sleep(delay); super().do_GET()
        def log_message(self, *a): pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally: server.shutdown(); server.server_close()


# ====================================================================================================================
# PROBES: the data cache and the manifest (CLI)
# ====================================================================================================================
@probe("data", "`neurocomp data` with no subcommand", names=("list", "import", "subcommand", "command"))
def no_subcommand(tmp):
    cli(tmp, "data")


@probe("data", "import from a folder that does not exist", names=("not a folder", "does not exist", "no such"))
def import_missing_source(tmp):
    cli(tmp, "data", "import", "kindalova2021", "--from", Path(tmp) / "nowhere")


@probe("data", "import an unknown dataset name", names=("unknown dataset",))
def import_unknown_dataset(tmp):
    cli(tmp, "data", "import", "no_such_dataset", "--from", tmp)


@probe("data", "import a copy with one corrupted file: refused naming it, nothing published", names=("checksum", "mismatch"), timeout=120)
def import_corrupted_source(tmp):
    src = Path(tmp) / "k"; shutil.copytree(kindalova_source(), src)
    victim = src / "data" / "simulated_data" / "17_T2_lesions_MNI_bin.nii.gz"; victim.write_bytes(victim.read_bytes()[:-3] + b"xyz")
    proc = cli(tmp, "data", "import", "kindalova2021", "--from", src, check=False)
    if (Path(tmp) / "cache" / "kindalova2021").exists(): raise Wrong("a copy with a corrupted file was published")
    if proc.returncode == 0: raise Wrong("exit 0 for a corrupted source")
    if "17_T2" not in proc.stdout + proc.stderr: raise Confusing("the error does not name the bad file: " + proc.stderr.strip()[-200:])
    raise CLIFailure(proc.returncode, proc.stdout + proc.stderr)


@probe("data", "import with an upper-case sha256 in the manifest: good files accepted (or the manifest refused)", expect="either",
       names=("upper", "lower-case", "lower case"))
def upper_case_sha(tmp):
    src, manifest, _ = toy_dataset(tmp, upper=True)
    cli(tmp, "data", "import", "toy", "--from", src, env=cli_env(tmp, NEUROCOMP_MANIFEST=manifest))
    if len(published_files(Path(tmp) / "cache" / "toy")) < 12: raise Wrong("import reported success without the files")


@probe("data", "a dataset named ../escaped is refused before any write outside NEUROCOMP_DATA",
       names=("folder name", "not a plain", "invalid dataset name", "path separator"))
def dataset_name_escapes(tmp):
    src, manifest, entry = toy_dataset(tmp, extra={})
    import yaml
    manifest.write_text(yaml.safe_dump({"version": 1, "datasets": {"../escaped": entry}}))
    proc = cli(tmp, "data", "import", "../escaped", "--from", src, env=cli_env(tmp, NEUROCOMP_MANIFEST=manifest), check=False)
    if (Path(tmp) / "escaped").exists() or (Path(tmp) / ".escaped.partial").exists():
        raise Wrong("the dataset was written outside the cache folder")
    if proc.returncode == 0: raise Wrong("exit 0")
    raise CLIFailure(proc.returncode, proc.stdout + proc.stderr)


@probe("data", "NEUROCOMP_MANIFEST points at a folder", names=("manifest",))
def manifest_is_folder(tmp):
    cli(tmp, "data", "list", env=cli_env(tmp, NEUROCOMP_MANIFEST=tmp))


@probe("data", "NEUROCOMP_MANIFEST holds binary garbage", names=("manifest", "yaml", "utf-8"))
def manifest_binary(tmp):
    (Path(tmp) / "m.yml").write_bytes(b"\x80\x81\xfe\xff" * 10)
    proc = cli(tmp, "data", "list", env=cli_env(tmp, NEUROCOMP_MANIFEST=Path(tmp) / "m.yml"), check=False)
    if proc.returncode == 0: raise Wrong("a garbage manifest was accepted")
    if "m.yml" not in proc.stderr: raise Confusing("the error does not name the manifest file: " + proc.stderr.strip()[-200:])
    raise CLIFailure(proc.returncode, proc.stderr)


@probe("data", "a manifest file entry whose path is a number", names=("path",))
def manifest_path_number(tmp):
    (Path(tmp) / "m.yml").write_text("datasets:\n  x: {kind: external, description: d, access: a, licence: l, files: [{path: 5, sha256: '%s'}]}\n" % ("a" * 64))
    cli(tmp, "data", "list", env=cli_env(tmp, NEUROCOMP_MANIFEST=Path(tmp) / "m.yml"))


@probe("data", "NEUROCOMP_DATA points at a regular file", names=("neurocomp_data", "cache", "not a directory", "not a folder"))
def data_dir_is_file(tmp):
    src, manifest, _ = toy_dataset(tmp)
    (Path(tmp) / "cachefile").write_text("x")
    cli(tmp, "data", "import", "toy", "--from", src, env=cli_env(tmp, NEUROCOMP_MANIFEST=manifest, NEUROCOMP_DATA=Path(tmp) / "cachefile"))


@probe("data", "list after a cached file was deleted: must not say 'cached'", expect="result")
def list_after_delete(tmp):
    src, manifest, entry = toy_dataset(tmp); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    (Path(tmp) / "cache" / "toy" / entry["files"][3]["path"]).unlink()
    out = cli(tmp, "data", "list", env=env).stdout
    if any(line.split()[:1] == ["toy"] and " cached " in f" {line} " for line in out.splitlines()):
        raise Wrong("`data list` says cached for a dataset with a missing file")


@probe("data", "list after a cached file was truncated: must not say 'cached'", expect="result")
def list_after_truncate(tmp):
    src, manifest, entry = toy_dataset(tmp); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    truncate(Path(tmp) / "cache" / "toy" / entry["files"][0]["path"])
    out = cli(tmp, "data", "list", env=env).stdout
    if any(line.split()[:1] == ["toy"] and " cached " in f" {line} " for line in out.splitlines()):
        raise Wrong("`data list` says cached for a dataset with a truncated file")


@probe("data", "verify a cached dataset with a deleted file: non-zero exit naming it", names=("f03", "missing"))
def verify_after_delete(tmp):
    src, manifest, entry = toy_dataset(tmp); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    (Path(tmp) / "cache" / "toy" / entry["files"][3]["path"]).unlink()
    cli(tmp, "data", "verify", "toy", env=env)
    raise Wrong("verify exited 0 with a file missing")


@probe("data", "fetch from a server that refuses connections", names=("could not download", "127.0.0.1"))
def fetch_connection_refused(tmp):
    src, manifest, _ = toy_dataset(tmp, base_url="http://127.0.0.1:9/")
    cli(tmp, "data", "fetch", "toy", env=cli_env(tmp, NEUROCOMP_MANIFEST=manifest))


@probe("data", "the issue's race, 5 rounds: `import & sleep D; import; wait` (D = 0.3 to 2.7 s) publishes a complete copy, both exit 0",
       expect="result", timeout=300)
def concurrent_import_rounds(tmp):
    source, listing = kindalova_source(), kindalova_listing()
    lost, foreign, failed = [], [], []
    for r, delay in enumerate((0.3, 0.9, 1.5, 2.1, 2.7)):  # timing-dependent: the second run starts at several points of the first
        env = cli_env(tmp, NEUROCOMP_DATA=Path(tmp) / f"cache{r}")
        first = start_cli(tmp, "data", "import", "kindalova2021", "--from", source, env=env); time.sleep(delay)
        second = cli(tmp, "data", "import", "kindalova2021", "--from", source, env=env, check=False)
        first_output = first.communicate(timeout=180)[0]
        got = [f for f in published_files(Path(tmp) / f"cache{r}" / "kindalova2021") if f != ".verified"]
        listed = " cached " in cli(tmp, "data", "list", env=env).stdout
        if set(listing) - set(got):
            lost.append(f"round {r + 1}: {len(set(listing) & set(got))}/{len(listing)} files published, exit codes "
                        f"{first.returncode}, {second.returncode}, `data list` says {'cached' if listed else 'not cached'}")
        elif got != listing: foreign.append(f"round {r + 1}: {sorted(set(got) - set(listing))[:2]}")
        if first.returncode or second.returncode: failed.append(first_output + second.stdout + second.stderr)
        shutil.rmtree(Path(tmp) / f"cache{r}", ignore_errors=True)
    if lost: raise Lost("; ".join(lost))
    if foreign: raise Wrong("files the manifest does not list were published: " + "; ".join(foreign))
    if failed: raise CLIFailure(2, failed[0])


@probe("data", "two concurrent fetches from a slow server publish one complete copy, both exit 0", expect="result", timeout=120)
def concurrent_fetch(tmp):
    src, manifest, entry = toy_dataset(tmp, n_files=16)
    with http_server(src, delay=0.02) as url:
        import yaml
        manifest.write_text(yaml.safe_dump({"version": 1, "datasets": {"toy": dict(entry, base_url=url)}}))
        env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
        procs = [start_cli(tmp, "data", "fetch", "toy", env=env)]; time.sleep(0.25)
        procs.append(start_cli(tmp, "data", "fetch", "toy", env=env))
        outs = [p.communicate(timeout=100)[0] for p in procs]
    got = [f for f in published_files(Path(tmp) / "cache" / "toy") if f != ".verified"]
    expected = sorted(f["path"] for f in entry["files"])
    if set(expected) - set(got): raise Lost(f"{len(set(expected) & set(got))}/16 files published")
    if got != expected: raise Wrong(f"files the manifest does not list were published: {sorted(set(got) - set(expected))[:3]}")
    for p, out in zip(procs, outs):
        if p.returncode: raise CLIFailure(p.returncode, out)


@probe("data", "an import killed mid-way publishes nothing; the rerun publishes exactly the manifest's files", expect="result", timeout=120)
def killed_import_then_rerun(tmp):
    src, manifest, entry = toy_dataset(tmp, n_files=30); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest, SLOW_COPY=0.05)
    proc = start_cli(tmp, "data", "import", "toy", "--from", src, env=env, code=SLOW_CLI)
    cache = Path(tmp) / "cache"; end = time.monotonic() + 60
    while time.monotonic() < end and proc.poll() is None:
        if sum(1 for d in cache.glob(".toy*") if d.is_dir() for p in d.rglob("*") if p.is_file()) >= 4: break
        time.sleep(0.01)
    proc.kill(); proc.wait()
    if (cache / "toy").exists(): raise Wrong("a killed import left a published folder")
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    expected = sorted([f["path"] for f in entry["files"]] + [".verified"])
    if published_files(cache / "toy") != expected:
        raise Wrong(f"the rerun published other files than the manifest's: {sorted(set(published_files(cache / 'toy')) ^ set(expected))[:3]}")


@probe("data", "a stray file in an old staging folder is never published", expect="result")
def stray_in_old_staging(tmp):
    src, manifest, entry = toy_dataset(tmp); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
    stale = Path(tmp) / "cache" / ".toy.partial"; (stale / "d0").mkdir(parents=True)
    (stale / "d0" / "stray.nii.gz").write_text("from a dead run")
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    if (Path(tmp) / "cache" / "toy" / "d0" / "stray.nii.gz").exists(): raise Wrong("a dead run's stray file was published")


@probe("data", "reimport over a good copy from a corrupted source keeps the good copy", expect="result")
def failed_reimport_keeps_copy(tmp):
    src, manifest, entry = toy_dataset(tmp); env = cli_env(tmp, NEUROCOMP_MANIFEST=manifest)
    cli(tmp, "data", "import", "toy", "--from", src, env=env)
    (src / entry["files"][5]["path"]).write_bytes(b"corrupted")
    cli(tmp, "data", "import", "toy", "--from", src, env=env, check=False)
    if len(published_files(Path(tmp) / "cache" / "toy")) != 13: raise Lost("the good cached copy was damaged by a failed reimport")


# ====================================================================================================================
# PROBES: reproduce CLI
# ====================================================================================================================
@probe("reproduce", "--only with an unknown figure id", names=("unknown figure", "known ids"))
def unknown_figure(tmp):
    cli(tmp, "reproduce", "--only", "no_such_figure", "--out", Path(tmp) / "out")


@probe("reproduce", "--out under a regular file (an unwritable output folder)", names=("out", "not a directory", "cannot", "writable"))
def out_unwritable(tmp):
    (Path(tmp) / "file").write_text("x")
    cli(tmp, "reproduce", "--only", "neurocomp_templates_overview", "--out", Path(tmp) / "file" / "gallery", timeout=120)


@probe("reproduce", "-p without '='", names=("key=value", "=", "parameter"))
def param_without_equals(tmp):
    cli(tmp, "reproduce", "--only", "neurocomp_templates_overview", "-p", "seed", "--out", Path(tmp) / "out")


@probe("reproduce", "-p output_dir=... (reserved: set with --out)", names=("output_dir", "--out"))
def param_reserved(tmp):
    cli(tmp, "reproduce", "--only", "neurocomp_templates_overview", "-p", "output_dir=/tmp", "--out", Path(tmp) / "out")


@probe("reproduce", "-p a parameter no selected figure declares", names=("not declared", "unknown", "parameter"))
def param_undeclared(tmp):
    cli(tmp, "reproduce", "--only", "neurocomp_templates_overview", "-p", "n_bananas=3", "--out", Path(tmp) / "out")


@probe("reproduce", "--list works and names the figures", expect="result")
def reproduce_list(tmp):
    out = cli(tmp, "reproduce", "--list").stdout
    if "kindalova2021" not in out: raise Wrong("--list does not list the kindalova2021 figures")


# ====================================================================================================================
# PROBES: the voxel-wise GLM (fit_glm, fit_voxelwise)
# ====================================================================================================================
def glm(Y, X, **kw):
    return call(api("neurocomp.lesions.glm:fit_voxelwise"), Y, X, **{"n_jobs": 1, **kw})


@probe("glm", "Y with NaN", names=("nan",))
def glm_y_nan(tmp):
    Y, X = lesion_problem(); Y = Y.astype(float); Y[3, 2] = float("nan"); glm(Y, X)


@probe("glm", "Y with a 2", names=("binary",))
def glm_y_two(tmp):
    Y, X = lesion_problem(); Y[0, 0] = 2; glm(Y, X)


@probe("glm", "X with NaN (a missing covariate)", names=("nan", "missing"))
def glm_x_nan(tmp):
    Y, X = lesion_problem(); X[4, 1] = float("nan"); glm(Y, X)


@probe("glm", "X with a duplicated column (rank deficient)", names=("rank", "collinear"))
def glm_x_collinear(tmp):
    import numpy as np
    Y, X = lesion_problem(); glm(Y, np.c_[X, X[:, 1]])


@probe("glm", "X has fewer rows than Y", names=("subjects", "rows"))
def glm_rows_mismatch(tmp):
    Y, X = lesion_problem(); glm(Y, X[:-3])


@probe("glm", "X as a 1-D vector", names=("2-d", "2d", "shape"))
def glm_x_1d(tmp):
    Y, X = lesion_problem(); glm(Y, X[:, 1])


@probe("glm", "X as text (strings that are not numbers)", names=("numeric", "design", "x "))
def glm_x_text(tmp):
    import numpy as np
    Y, X = lesion_problem(); Xs = X.astype(str); Xs[0, 2] = "male"; glm(Y, Xs)


@probe("glm", "more covariates than subjects", names=("subjects", "covariates"))
def glm_p_ge_n(tmp):
    import numpy as np
    Y, X = lesion_problem(n=4); glm(Y, np.c_[X, np.arange(4.0), np.arange(4.0) ** 2])


@probe("glm", "MeanBR with maxit=0 must not report converged=True", expect="either", names=("maxit",))
def glm_maxit0_meanbr(tmp):
    Y, X = lesion_problem(); r = glm(Y, X, maxit=0)
    if field(r, "converged").any(): raise Wrong("maxit=0 returns the starting values with converged=True")


@probe("glm", "ML with maxit=0 must not report converged=True", expect="either", names=("maxit",))
def glm_maxit0_ml(tmp):
    Y, X = lesion_problem(); r = glm(Y, X, method="ml", maxit=0)
    if field(r, "converged").any(): raise Wrong("maxit=0 returns the starting values with converged=True")


@probe("glm", "epsilon=0", names=("epsilon",))
def glm_epsilon0(tmp):
    Y, X = lesion_problem(); glm(Y, X, epsilon=0)


@probe("glm", "slowit=0", names=("slowit",))
def glm_slowit0(tmp):
    Y, X = lesion_problem(); glm(Y, X, slowit=0)


@probe("glm", "method='firth' (not offered)", names=("method",))
def glm_bad_method(tmp):
    Y, X = lesion_problem(); glm(Y, X, method="firth")


@probe("glm", "ML probit agrees with statsmodels on an ordinary voxel", expect="result")
def glm_ml_matches_statsmodels(tmp):
    import numpy as np, statsmodels.api as sm
    Y, X = lesion_problem(n=200, v=3, seed=3)
    r = call(api("neurocomp.lesions.glm:fit_glm"), Y[:, 2], X, method="ml", n_jobs=1)
    ref = sm.GLM(Y[:, 2], X, family=sm.families.Binomial(sm.families.links.Probit())).fit()
    if not np.allclose(field(r, "coef"), ref.params, atol=1e-5): raise Wrong(f"coef {field(r, 'coef')} vs statsmodels {ref.params}")
    if not np.allclose(field(r, "se"), ref.bse, rtol=1e-3): raise Wrong(f"se {field(r, 'se')} vs statsmodels {ref.bse}")


@probe("glm", "ML on a perfectly separated voxel flags the estimate as infinite", expect="result")
def glm_ml_separation(tmp):
    import numpy as np
    Y, X = lesion_problem(n=40, v=1); Y[:, 0] = (X[:, 1] > 0).astype(np.uint8)
    r = glm(Y, X, method="ml")
    inf = field(r, "infinite")
    if inf is None or not np.asarray(inf)[0, 1]: raise Wrong(f"separation on age not flagged; coef {field(r, 'coef')[0]}")


@probe("glm", "MeanBR on a voxel with no lesion gives finite estimates", expect="result")
def glm_meanbr_empty_voxel(tmp):
    import numpy as np
    Y, X = lesion_problem(); Y[:, 0] = 0
    r = glm(Y, X)
    if not np.isfinite(field(r, "coef")[0]).all() or not field(r, "converged")[0]: raise Wrong("MeanBR not finite/converged on an all-zero voxel")


@probe("glm", "a truncated block checkpoint on resume: clear error naming it, or recomputed", expect="either", names=("checkpoint", ".npz"))
def glm_truncated_checkpoint(tmp):
    import numpy as np
    Y, X = lesion_problem(); folder = Path(tmp) / "ckpt"
    first = glm(Y, X, checkpoint_dir=folder)
    files = sorted(folder.glob("*"))
    if not files: raise Moved("no checkpoint files written")
    for f in files: truncate(f)
    again = glm(Y, X, checkpoint_dir=folder)
    if not np.allclose(field(first, "coef"), field(again, "coef")): raise Wrong("resumed from a truncated checkpoint with other results")


@probe("glm", "a checkpoint file overwritten with garbage on resume", expect="either", names=("checkpoint", ".npz"))
def glm_garbage_checkpoint(tmp):
    import numpy as np
    Y, X = lesion_problem(); folder = Path(tmp) / "ckpt"
    first = glm(Y, X, checkpoint_dir=folder)
    for f in sorted(folder.glob("*")): f.write_bytes(b"PK\x03\x04 not really a zip" * 10)
    again = glm(Y, X, checkpoint_dir=folder)
    if not np.allclose(field(first, "coef"), field(again, "coef")): raise Wrong("resumed from a garbage checkpoint with other results")


@probe("glm", "checkpoint folder reused for another design: no foreign blocks reused", expect="result")
def glm_checkpoint_other_design(tmp):
    import numpy as np
    Y, X = lesion_problem(); folder = Path(tmp) / "ckpt"
    glm(Y, X, checkpoint_dir=folder)
    X2 = X.copy(); X2[:, 1] = X[::-1, 1]
    fresh, resumed = glm(Y, X2), glm(Y, X2, checkpoint_dir=folder)
    if not np.allclose(field(fresh, "coef"), field(resumed, "coef")): raise Wrong("blocks of another design were reused")


@probe("glm", "checkpoint folder is a regular file", names=("checkpoint", "not a directory", "exists"))
def glm_checkpoint_is_file(tmp):
    Y, X = lesion_problem(); (Path(tmp) / "f").write_text("x"); glm(Y, X, checkpoint_dir=Path(tmp) / "f")


# ====================================================================================================================
# PROBES: lesion maps from images (fit_lesion_maps, design_matrix, load_lesion_matrix)
# ====================================================================================================================
def maps(masks, covariates, model="lesion ~ age + sex", **kw):
    return call(api("neurocomp.lesions.mapping:fit_lesion_maps"), masks, covariates, model, **kw)


@probe("maps", "first mask on another grid (affine): the error names that mask", names=("sub-01_mask",))
def maps_first_on_other_grid(tmp):
    import numpy as np
    paths, cov = lesion_masks(tmp)
    import nibabel as nib
    img = nib.load(paths[0]); write_nifti(paths[0], np.asarray(img.dataobj), np.diag([2.0, 2, 2, 1]))
    maps(paths, cov)


@probe("maps", "a mask in the middle on another shape: the error names it", names=("sub-07_mask",))
def maps_middle_other_shape(tmp):
    import numpy as np
    paths, cov = lesion_masks(tmp); write_nifti(paths[6], np.zeros((7, 6, 6), np.uint8)); maps(paths, cov)


@probe("maps", "a mask with values 0-3 (a label map, not binary)", names=("binary",))
def maps_non_binary(tmp):
    import numpy as np
    paths, cov = lesion_masks(tmp); write_nifti(paths[2], rng().integers(0, 4, (6, 6, 6)).astype(np.uint8)); maps(paths, cov)


@probe("maps", "a truncated .nii.gz mask: the error names the file", names=("sub-05_mask",))
def maps_truncated(tmp):
    paths, cov = lesion_masks(tmp); truncate(paths[4]); maps(paths, cov)


@probe("maps", "a mask path that does not exist", names=("sub-99", "does not exist", "no such file"))
def maps_missing_file(tmp):
    paths, cov = lesion_masks(tmp); paths[3] = Path(tmp) / "sub-99_mask.nii.gz"; maps(paths, cov)


@probe("maps", "29 masks for 30 covariate rows", names=("match", "rows", "masks"))
def maps_count_mismatch(tmp):
    paths, cov = lesion_masks(tmp); maps(paths[:-1], cov)


@probe("maps", "formula names a covariate the table lacks", names=("bp_sys",))
def maps_missing_covariate(tmp):
    paths, cov = lesion_masks(tmp); maps(paths, cov, "lesion ~ age + bp_sys")


_TEXT_AGE = (("age", "text"), ("age", "numeric"), ("age", "string"), ("age", "level"), ("age", "categor"))


@probe("maps", "age in whole years read from a CSV with one 'n/a' (numbers stored as text)", names=_TEXT_AGE)
def maps_text_numeric_covariate(tmp):
    import pandas as pd
    paths, cov = lesion_masks(tmp)
    cov["age"] = cov["age"].round().astype(object); cov.loc[3, "age"] = "n/a"; cov.to_csv(Path(tmp) / "c.csv", index=False)
    table = pd.read_csv(Path(tmp) / "c.csv", keep_default_na=False)
    out = maps(paths, table)
    raise Wrong(f"a design of {field(out, 'design').shape[1]} columns for {len(table)} subjects, without a word")


@probe("maps", "age stored as text digits ('61'): numeric, or refused naming it", expect="either", names=_TEXT_AGE)
def maps_text_digits(tmp):
    paths, cov = lesion_masks(tmp); cov["age"] = cov["age"].round().astype(int).astype(str)
    out = maps(paths, cov)
    design = field(out, "design")  # LesionMaps is a results object (attributes), no longer a dict
    if design.shape[1] != 3: raise Wrong(f"text ages became {design.shape[1] - 2} dummy columns")


@probe("maps", "covariates given as a dict", names=("dataframe",))
def maps_dict_covariates(tmp):
    paths, cov = lesion_masks(tmp); maps(paths, cov.to_dict("list"))


@probe("maps", "a formula with a syntax error", names=("formula",))
def maps_bad_formula(tmp):
    paths, cov = lesion_masks(tmp); maps(paths, cov, "lesion ~ age +")


@probe("maps", "all masks empty", names=("no voxel", "lesion", "empty"))
def maps_all_empty(tmp):
    import numpy as np
    paths, cov = lesion_masks(tmp)
    for p in paths: write_nifti(p, np.zeros((6, 6, 6), np.uint8))
    maps(paths, cov)


@probe("maps", "output_dir reused with a smaller model: no stale maps of the larger one left", expect="result", timeout=120)
def maps_output_dir_reuse(tmp):
    paths, cov = lesion_masks(tmp); out = Path(tmp) / "out"
    maps(paths, cov, "lesion ~ age + sex + bp", output_dir=out)
    maps(paths, cov, "lesion ~ age", output_dir=out)
    stale = sorted(p.name for p in out.iterdir() if "bp" in p.name or "sex" in p.name)
    if stale: raise Wrong(f"maps of the earlier model left beside the new provenance: {stale}")


@probe("maps", "output_dir holding the user's own files: they survive a run", expect="result", timeout=120)
def maps_output_dir_user_files(tmp):
    paths, cov = lesion_masks(tmp); out = Path(tmp) / "out"; out.mkdir()
    (out / "my_notes.txt").write_text("do not delete")
    maps(paths, cov, output_dir=out)
    if not (out / "my_notes.txt").exists(): raise Lost("the user's file in output_dir was deleted")


@probe("maps", "output_dir under a regular file (unwritable)", names=("output_dir", "not a directory", "out"))
def maps_output_dir_unwritable(tmp):
    paths, cov = lesion_masks(tmp); (Path(tmp) / "f").write_text("x"); maps(paths, cov, output_dir=Path(tmp) / "f" / "out")


@probe("maps", "the maps agree with fit_voxelwise on the same data", expect="result", timeout=120)
def maps_agree_with_glm(tmp):
    import numpy as np
    paths, cov = lesion_masks(tmp)
    out = maps(paths, cov, "lesion ~ age")
    Y, fitted, _ = call(api("neurocomp.lesions.mapping:load_lesion_matrix"), paths)
    X = np.c_[np.ones(len(cov)), cov["age"].to_numpy()]
    ref = glm(Y, X)
    if not np.allclose(field(field(out, "fit", "result"), "coef"), field(ref, "coef"), atol=1e-6): raise Wrong("maps' fit differs from fit_voxelwise")


# ====================================================================================================================
# PROBES: the lesion simulator
# ====================================================================================================================
def simulate(reference=None, **kw):
    fn = api("neurocomp.lesions.simulate:simulate_lesion_masks")
    return call(fn, reference if reference is not None else reference_maps(), **{"n_subjects": 5, "seed": 0, **kw})


@probe("simulate", "length scale 1e9: refused before allocating", names=("length", "memory", "gib", "ℓ"))
def sim_huge_length_scale(tmp):
    api("neurocomp.lesions.simulate:GaussianRandomField")((20, 20, 20), 1e9)


@probe("simulate", "length scale 0", names=("length",))
def sim_length_zero(tmp):
    simulate(length_scale=0)


@probe("simulate", "n_subjects=0", names=("n_subjects",))
def sim_zero_subjects(tmp):
    simulate(n_subjects=0)


@probe("simulate", "n_subjects=2.5", names=("n_subjects", "integer"))
def sim_fractional_subjects(tmp):
    simulate(n_subjects=2.5)


@probe("simulate", "ages outside the reference range", names=("age",))
def sim_ages_out_of_range(tmp):
    import numpy as np
    simulate(ages=np.array([20.0, 50, 60]))


@probe("simulate", "ages with NaN", names=("nan", "age"))
def sim_ages_nan(tmp):
    import numpy as np
    simulate(ages=np.array([50.0, np.nan, 60]))


@probe("simulate", "an unknown covariance convention", names=("convention",))
def sim_bad_convention(tmp):
    simulate(convention="matern")


@probe("simulate", "a reference intercept with +inf inside the brain", names=("inf", "intercept"))
def sim_reference_inf(tmp):
    import numpy as np
    ref = reference_maps(); ref.intercept[5, 5, 5] = np.inf
    simulate(reference=api("neurocomp.lesions.simulate:ReferenceMaps")(**{k: getattr(ref, k) for k in ref.__dataclass_fields__}))


@probe("simulate", "the same seed gives the same masks; another seed others", expect="result")
def sim_seeded(tmp):
    import numpy as np
    a, b, c = simulate(seed=3), simulate(seed=3), simulate(seed=4)
    Ya, Yb, Yc = (np.asarray(field(s, "Y", "masks")) for s in (a, b, c))
    if not np.array_equal(Ya, Yb): raise Wrong("same seed, different masks")
    if np.array_equal(Ya, Yc): raise Wrong("different seeds, identical masks")



# ====================================================================================================================
# PROBES: BSGLMM
# ====================================================================================================================
@probe("bsglmm", "Y with NaN", names=("nan",))
def bs_y_nan(tmp):
    Y, X, c = bsglmm_problem(); Y = Y.astype(float); Y[0, 0] = float("nan"); bsglmm(Y, X, c)


@probe("bsglmm", "duplicate voxel coordinates", names=("duplicate",))
def bs_coords_duplicate(tmp):
    Y, X, c = bsglmm_problem(); c[1] = c[0]; bsglmm(Y, X, c)


@probe("bsglmm", "non-integer voxel coordinates", names=("integer",))
def bs_coords_float(tmp):
    Y, X, c = bsglmm_problem(); bsglmm(Y, X, c + 0.5)


@probe("bsglmm", "one voxel far from the rest: refused before allocating, or fitted as its own component", expect="either",
       names=("memory", "gib", "eib", "far", "bounding", "extent"))
def bs_far_voxel(tmp):
    # the lattice was once a dense box over the coordinates (6.94 EiB here); a sparse lattice makes the far voxel an
    # isolated component of one voxel, which has a proper posterior when its data are not separated: a valid fit
    import numpy as np
    Y, X, c = bsglmm_problem(); c = c.copy(); c[-1] = (10 ** 6, 10 ** 6, 10 ** 6)
    fit = bsglmm(Y, X, c)
    coef = np.asarray(field(fit, "coef"), float)
    if coef.shape[0] != len(c) or not np.isfinite(coef).all(): raise Wrong(f"coef of shape {coef.shape}, finite: {np.isfinite(coef).all()}")


@probe("bsglmm", "X as text", names=("numeric", "x "))
def bs_x_text(tmp):
    Y, X, c = bsglmm_problem(); bsglmm(Y, X.astype(str), c)


@probe("bsglmm", "n_samples=0", names=("n_samples",))
def bs_zero_samples(tmp):
    Y, X, c = bsglmm_problem(); bsglmm(Y, X, c, n_samples=0)


@probe("bsglmm", "device='cuda' on a machine without a GPU", expect="either", names=("cuda", "gpu"))
def bs_cuda_missing(tmp):
    import torch
    if torch.cuda.is_available(): raise NoData("a GPU is present: the probe is about its absence")
    Y, X, c = bsglmm_problem(); bsglmm(Y, X, c, device="cuda")


@probe("bsglmm", "a truncated checkpoint on resume", expect="either", names=("checkpoint",))
def bs_truncated_checkpoint(tmp):
    Y, X, c = bsglmm_problem(); ck = Path(tmp) / "bs.npz"
    bsglmm(Y, X, c, checkpoint=ck, checkpoint_every=5)
    if not ck.exists(): raise Moved("no checkpoint written")
    truncate(ck); bsglmm(Y, X, c, checkpoint=ck, checkpoint_every=5)


@probe("bsglmm", "a checkpoint of garbage bytes", expect="either", names=("checkpoint",))
def bs_garbage_checkpoint(tmp):
    Y, X, c = bsglmm_problem(); ck = Path(tmp) / "bs.npz"; ck.write_bytes(os.urandom(3000)); bsglmm(Y, X, c, checkpoint=ck)


@probe("bsglmm", "a checkpoint of another fit (other data)", expect="either", names=("checkpoint", "different"))
def bs_foreign_checkpoint(tmp):
    import numpy as np
    Y, X, c = bsglmm_problem(); ck = Path(tmp) / "bs.npz"
    bsglmm(Y, X, c, checkpoint=ck, checkpoint_every=5)
    Y2 = Y.copy(); Y2[:, 0] = 1 - Y2[:, 0]
    fresh = bsglmm(Y2, X, c); resumed = bsglmm(Y2, X, c, checkpoint=Path(tmp) / "bs.npz", checkpoint_every=5)
    if not np.allclose(field(fresh, "coef"), field(resumed, "coef")): raise Wrong("resumed another fit's chains")


@probe("bsglmm", "a small valid fit: finite posterior maps of the right shape", expect="result", timeout=120)
def bs_valid(tmp):
    import numpy as np
    Y, X, c = bsglmm_problem(); r = bsglmm(Y, X, c)
    coef = np.asarray(field(r, "coef"))
    if coef.shape != (27, 2) or not np.isfinite(coef).all(): raise Wrong(f"coef shape {coef.shape} or non-finite")


# ====================================================================================================================
# PROBES: cohort loaders
# ====================================================================================================================
@probe("cohorts", "BIDS: the first image on another grid: the error names it, not a good one", names=("sub-01",))
def bids_first_other_grid(tmp):
    import numpy as np
    root = bids_lesions(Path(tmp) / "bids")
    write_nifti(root / "sub-01/anat/sub-01_mask.nii.gz", np.zeros((6, 6, 6), np.uint8), np.diag([3.0, 3, 3, 1]))
    load_bids(root)


@probe("cohorts", "BIDS: participant_id written as 01 (no 'sub-' prefix, read as a number)", expect="either", names=("participant_id", "sub-"))
def bids_participant_numeric(tmp):
    import pandas as pd
    table = pd.DataFrame({"participant_id": [f"{i + 1:02d}" for i in range(8)], "age": range(50, 58), "sex": [0, 1] * 4})
    cohort = load_bids(bids_lesions(Path(tmp) / "bids", participants=table))
    if len(cohort) != 8: raise Wrong(f"{len(cohort)} images matched of 8")


@probe("cohorts", "BIDS: no participants.tsv", names=("participants",))
def bids_no_participants(tmp):
    root = bids_lesions(Path(tmp) / "bids"); (root / "participants.tsv").unlink(); load_bids(root)


@probe("cohorts", "BIDS: an image without a participants row", names=("sub-08", "phenotype", "participant"))
def bids_image_without_row(tmp):
    import pandas as pd
    root = bids_lesions(Path(tmp) / "bids")
    t = pd.read_csv(root / "participants.tsv", sep="\t"); t[t.participant_id != "sub-08"].to_csv(root / "participants.tsv", sep="\t", index=False)
    load_bids(root)


@probe("cohorts", "BIDS: a truncated image: the error names it", names=("sub-03",))
def bids_truncated(tmp):
    root = bids_lesions(Path(tmp) / "bids"); truncate(root / "sub-03/anat/sub-03_mask.nii.gz"); load_bids(root)


@probe("cohorts", "BIDS: a mask with +inf", names=("inf", "binary"))
def bids_inf_mask(tmp):
    import numpy as np
    root = bids_lesions(Path(tmp) / "bids")
    d = np.zeros((6, 6, 6), np.float32); d[1, 1, 1] = np.inf; write_nifti(root / "sub-02/anat/sub-02_mask.nii.gz", d)
    cohort = load_bids(root)
    arrays = cohort_arrays(cohort)
    if any(np.isinf(a).any() for a in arrays): raise Wrong("a +inf lesion mask was accepted")


@probe("cohorts", "a root folder that does not exist", names=("does not exist", "no such", "not found", "nowhere"))
def cohort_root_missing(tmp):
    load_bids(Path(tmp) / "nowhere")


@probe("cohorts", "CAPS: a grey-matter map with +inf voxels", names=("inf", "finite"), timeout=120)
def caps_inf(tmp):
    import numpy as np
    root = caps_cohort(Path(tmp) / "caps", tweak=lambda i, d: d.__setitem__((60, 60, 60), np.inf) if i == 1 else None)
    cohort = load_caps(root)
    if any(np.isinf(a).any() for a in cohort_arrays(cohort)): raise Wrong("+inf voxels accepted in a cohort image")


@probe("cohorts", "CAPS: only modulated maps: refused (or rescaled on request)", names=("modulated",), timeout=120)
def caps_modulated(tmp):
    load_caps(caps_cohort(Path(tmp) / "caps", modulated=True), old_default=True)
    raise Wrong("modulated grey-matter maps accepted without a word")


@probe("cohorts", "CAPS: labels.tsv without the diagnosis column: refused naming it, or loaded without one", expect="either",
       names=("diagnosis",), timeout=120)
def caps_no_diagnosis(tmp):
    import pandas as pd
    root = caps_cohort(Path(tmp) / "caps"); t = pd.read_csv(root / "labels.tsv", sep="\t")
    t.drop(columns="diagnosis").to_csv(root / "labels.tsv", sep="\t", index=False)
    try: loader = api("neurocomp.cohorts:load_caps_cohort")
    except Moved: loader = lambda r: call(api("neurocomp.cohorts:load_cohort"), r, layout="caps", phenotypes=r / "labels.tsv", required=["diagnosis"], modulated=False)
    cohort = loader(root)
    if "diagnosis" in cohort.phenotypes and cohort.phenotypes["diagnosis"].notna().any(): raise Wrong("a diagnosis column appeared from nowhere")


def ukb_root(tmp, n=4, sex=None, drop_t1=None):
    "A UK Biobank bulk layout: ROOT/<eid>_20252_2_0/T1/... and ukb_main.csv."
    import numpy as np, pandas as pd
    root = Path(tmp) / "ukb"; rows = []
    for i in range(n):
        eid = 1000001 + i; t1 = root / f"{eid}_20252_2_0" / "T1"
        if i != drop_t1: write_nifti(t1 / "T1_unbiased_brain.nii.gz", rng(i).uniform(0, 1, (8, 8, 8)).astype(np.float32))
        write_nifti(t1 / "T1_fast" / "T1_brain_pveseg.nii.gz", rng(i).integers(0, 4, (8, 8, 8)).astype(np.uint8))
        write_nifti(t1 / "T1_first" / "T1_first_all_fast_firstseg.nii.gz", np.zeros((8, 8, 8), np.uint8))
        rows.append({"eid": eid, "31-0.0": (sex or [0, 1])[i % 2], "25010-2.0": 1.1e6 + 1e4 * i})
    pd.DataFrame(rows).to_csv(root / "ukb_main.csv", index=False)
    return root


@probe("cohorts", "UKB: a subject folder without its T1 image: the error names it", names=("1000002", "t1_unbiased"))
def ukb_missing_t1(tmp):
    api("neurocomp.cohorts:load_ukb_cohort")(ukb_root(tmp, drop_t1=1))


@probe("cohorts", "UKB: sex coded as text ('Female'/'Male') in field 31", expect="either", names=("31", "sex"))
def ukb_text_sex(tmp):
    cohort = api("neurocomp.cohorts:load_ukb_cohort")(ukb_root(tmp, sex=["Female", "Male"]))
    sex = cohort.phenotypes["sex"]
    if sex.nunique() != 2: raise Wrong(f"sex has {sex.nunique()} levels")


@probe("cohorts", "UKB: no ukb_main.csv", names=("ukb_main", "table"))
def ukb_no_table(tmp):
    root = ukb_root(tmp); (root / "ukb_main.csv").unlink(); api("neurocomp.cohorts:load_ukb_cohort")(root)


# ====================================================================================================================
# PROBES: training (train_model)
# ====================================================================================================================
@probe("training", "a checkpoint of another run (other data, model, lr): refused, or not resumed", expect="either",
       names=("checkpoint", "fingerprint", "different"))
def train_foreign_checkpoint(tmp):
    import torch
    xa, ya = tiny_data(seed=0); xb, yb = tiny_data(seed=7); ck = Path(tmp) / "c.pt"
    _, mA = train(tiny_net(seed=0), (xa, ya), (xa[:4], ya[:4]), epochs=3, checkpoint_path=ck)
    _, mB = train(tiny_net(seed=7), (xb, yb), (xb[:4], yb[:4]), epochs=3, lr=1e-4, checkpoint_path=ck)
    if all(torch.equal(a, b) for a, b in zip(mA.state_dict().values(), mB.state_dict().values())):
        raise Wrong("the second run returned the first run's model: its data were never used")


@probe("training", "a checkpoint of random bytes: the error names the file", expect="either", names=("c.pt", "checkpoint"))
def train_garbage_checkpoint(tmp):
    x, y = tiny_data(); ck = Path(tmp) / "c.pt"; ck.write_bytes(os.urandom(4000))
    train(tiny_net(), (x, y), (x[:4], y[:4]), checkpoint_path=ck)


@probe("training", "a truncated checkpoint: the error names the file", expect="either", names=("c.pt", "checkpoint"))
def train_truncated_checkpoint(tmp):
    x, y = tiny_data(); ck = Path(tmp) / "c.pt"
    train(tiny_net(), (x, y), (x[:4], y[:4]), checkpoint_path=ck); truncate(ck)
    train(tiny_net(), (x, y), (x[:4], y[:4]), epochs=4, checkpoint_path=ck)


@probe("training", "images with +inf: the error says so (not 'lower lr')", names=("inf", "finite"))
def train_inf_images(tmp):
    x, y = tiny_data(); x[2, 0, 1, 1, 1] = float("inf"); train(tiny_net(), (x, y), (x[:4], y[:4]))


@probe("training", "images with NaN", names=("nan",))
def train_nan_images(tmp):
    x, y = tiny_data(); x[2, 0, 1, 1, 1] = float("nan"); train(tiny_net(), (x, y), (x[:4], y[:4]))


@probe("training", "epochs=0", names=("epochs",))
def train_zero_epochs(tmp):
    x, y = tiny_data(); train(tiny_net(), (x, y), (x[:4], y[:4]), epochs=0)


@probe("training", "lr=NaN", names=("lr",))
def train_lr_nan(tmp):
    x, y = tiny_data(); train(tiny_net(), (x, y), (x[:4], y[:4]), lr=float("nan"))


@probe("training", "validation images of another shape", names=("shape", "differ"))
def train_val_shape(tmp):
    x, y = tiny_data(); xv, yv = tiny_data(shape=(4, 3, 3)); train(tiny_net(), (x, y), (xv[:4], yv[:4]))


@probe("training", "a one-output model with CrossEntropyLoss (two classes)", names=("output", "class"))
def train_one_output_ce(tmp):
    x, y = tiny_data(); train(tiny_net(1), (x, y), (x[:4], y[:4]))


@probe("training", "checkpoint in a folder that does not exist yet", expect="either", names=("checkpoint", "folder", "directory"))
def train_checkpoint_new_folder(tmp):
    x, y = tiny_data(); ck = Path(tmp) / "new" / "sub" / "c.pt"
    train(tiny_net(), (x, y), (x[:4], y[:4]), checkpoint_path=ck)
    if not ck.exists(): raise Wrong("no checkpoint written and no error")


@probe("training", "the same seed gives the same history", expect="result")
def train_seeded(tmp):
    x, y = tiny_data()
    h1, _ = train(tiny_net(), (x, y), (x[:4], y[:4]), seed=3); h2, _ = train(tiny_net(), (x, y), (x[:4], y[:4]), seed=3)
    if not h1["train_loss"].equals(h2["train_loss"]): raise Wrong("same seed, different training losses")


class _Crash(RuntimeError): "A simulated crash in the middle of training."


@probe("training", "a run that crashed at epoch 3, rerun with the same arguments, matches an uninterrupted run", expect="result")
def train_resume_matches(tmp):
    import torch
    x, y = tiny_data(); ck = Path(tmp) / "c.pt"
    h_full, m_full = train(tiny_net(), (x, y), (x[:4], y[:4]), epochs=4, patience=None, restore_best=False)
    loss = torch.nn.CrossEntropyLoss(); calls = {"n": 0}; forward = loss.forward
    def crashing(*a):  # one training and one validation call per epoch: the 5th call is in epoch 3
        calls["n"] += 1
        if calls["n"] == 5: raise _Crash("simulated crash")
        return forward(*a)
    loss.forward = crashing
    try: train(tiny_net(), (x, y), (x[:4], y[:4]), epochs=4, patience=None, restore_best=False, checkpoint_path=ck, loss_fn=loss)
    except _Crash: pass
    h_res, m_res = train(tiny_net(), (x, y), (x[:4], y[:4]), epochs=4, patience=None, restore_best=False, checkpoint_path=ck)
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values()))
    if len(h_res) != 4 or not same: raise Wrong(f"the resumed run ({len(h_res)} epochs) gives another model than an uninterrupted one")


# ====================================================================================================================
# PROBES: perturbation masks (optimize_mask)
# ====================================================================================================================
@probe("masks", "a one-output model: refused (the softmax is constant, the mask cannot move)", names=("output", "class", "two"))
def mask_one_output(tmp):
    optimize(mask_model(n_out=1), mask_images(), target_class=0)
    raise Wrong("a one-output model was accepted: its softmax is constant at 1, the mask never moves")


@probe("masks", "an (N, X, Y) stack of 2D images: refused, not read as one 3D volume", names=("shape", "(n, x, y, z)", "3d", "dimensions"))
def mask_2d_stack(tmp):
    import torch
    images = mask_images()[:, :, :, 0]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    r = optimize(model, images)
    raise Wrong(f"(N, X, Y) images accepted; masks of shape {getattr(r, 'masks', None).shape}")


@probe("masks", "images with NaN", names=("nan",))
def mask_nan(tmp):
    import numpy as np
    im = mask_images(); im[0, 0, 0, 0] = np.nan; optimize(mask_model(), im)


@probe("masks", "images with +inf", names=("inf",))
def mask_inf(tmp):
    import numpy as np
    im = mask_images(); im[0, 0, 0, 0] = np.inf; optimize(mask_model(), im)


@probe("masks", "target_class=5 for a two-class model", names=("target_class",))
def mask_bad_target(tmp):
    optimize(mask_model(), mask_images(), target_class=5)


@probe("masks", "beta1=0", names=("beta1",))
def mask_beta_zero(tmp):
    optimize(mask_model(), mask_images(), beta1=0.0)


@probe("masks", "validation images of another shape", names=("shape", "differ"))
def mask_val_shape(tmp):
    optimize(mask_model(), mask_images(), validation_images=mask_images(shape=(7, 6, 6)))


@probe("masks", "the model classifies none of the images as the target class", names=("none", "class"))
def mask_none_correct(tmp):
    import numpy as np
    optimize(mask_model(), np.zeros((4, 6, 6, 6), np.float32), only_correct=True)


@probe("masks", "a valid run: masks in [0, 1] of the image shape, probability of the class lowered", expect="result")
def mask_valid(tmp):
    import numpy as np
    r = optimize(mask_model(), mask_images(), max_epochs=10)
    m = np.asarray(field(r, "masks"))
    if m.shape[-3:] != (6, 6, 6) or m.min() < 0 or m.max() > 1: raise Wrong(f"masks shape {m.shape}, range [{m.min()}, {m.max()}]")


# ====================================================================================================================
# PROBES: study configurations, phantoms, templates and atlases, figures
# ====================================================================================================================
@probe("config", "lesion study: unknown profile", names=("profile", "quick"))
def lesion_profile(tmp):
    api("neurocomp.lesions.study:study_config")("huge")


@probe("config", "lesion study: unknown parameter", names=("n_bananas",))
def lesion_unknown_key(tmp):
    api("neurocomp.lesions.study:study_config")("quick", n_bananas=3)


@probe("config", "lesion study: negative number of repetitions", names=("n_rep", "repetition"))
def lesion_negative_reps(tmp):
    fn = api("neurocomp.lesions.study:study_config"); profiles = api("neurocomp.lesions.study:PROFILES")
    key = next((k for k in profiles["quick"] if "rep" in k), None)
    if key is None: raise Moved("no repetitions parameter in the lesion study profiles")
    fn("quick", **{key: -2})


@probe("config", "sex-differences study: unknown parameter", names=("n_bananas",))
def sexdiff_unknown_key(tmp):
    api("neurocomp.sexdiff.study:study_config", "neurocomp.sex_differences.study:study_config", "neurocomp.sex_differences:study_config",
        "neurocomp.sex_differences:study_params")("quick", n_bananas=3)


@probe("config", "sex-differences: residualise on a column the table lacks", names=("total_brain_volume", "column"))
def sexdiff_missing_column(tmp):
    import pandas as pd
    api("neurocomp.sexdiff.methods:residualise_sex", "neurocomp.sex_differences:residualised_sex")(pd.DataFrame({"sex": [0, 1, 0, 1]}))


@probe("config", "sex-differences: a FAST label image on another affine than its T1", names=("affine", "grid"))
def sexdiff_affine_mismatch(tmp):
    import numpy as np
    try: loader = api("neurocomp.cohorts:load_ukb_cohort")
    except Moved:  # the code before the sexdiff package: its image preparation took the affines itself
        api("neurocomp.sex_differences:prepare_images")(np.ones((2, 4, 4, 4), np.float32), affine=np.eye(4), reference_affine=np.diag([2.0, 2, 2, 1]))
        return
    root = ukb_root(tmp)
    fast = root / "1000003_20252_2_0" / "T1" / "T1_fast" / "T1_brain_pveseg.nii.gz"
    import nibabel as nib
    write_nifti(fast, np.asarray(nib.load(fast).dataobj), np.diag([2.0, 2, 2, 1]))
    cohort = loader(root, progress=False)
    for i in range(len(cohort)): cohort.load_labels(i, "fast")  # what the CNN input preparation reads beside each T1
    raise Wrong("a FAST label image on another grid than its T1 was accepted")


@probe("phantoms", "random displacement with a NaN amplitude", names=("amplitude",))
def displacement_nan(tmp):
    import numpy as np
    d = api("neurocomp.phantoms.deformation:random_displacement")((8, 8, 8), 2.0, amplitude_mm=float("nan"))
    raise Wrong(f"a NaN amplitude accepted ({int(np.isnan(d).sum())} NaN displacements)")


@probe("templates", "template at 3.7 mm", names=("resolution",))
def template_resolution(tmp):
    api("neurocomp.data:load_template")("t1", resolution=3.7)


@probe("templates", "a region the atlas lacks", names=("Hipocampus",))
def region_unknown(tmp):
    img, labels = api("neurocomp.data:load_atlas")("aal2", resolution=4.0)
    api("neurocomp.data:region_mask")(img, labels, "Hipocampus")


@probe("figures", "save_table of a list, not a DataFrame", names=("dataframe",))
def save_table_list(tmp):
    api("neurocomp.figures:save_table")([1, 2, 3], "t", output_dir=tmp)


@probe("figures", "save_table with a name that is a path outside output_dir", names=("name",))
def save_table_escape(tmp):
    import pandas as pd
    out = Path(tmp) / "out"; out.mkdir()
    api("neurocomp.figures:save_table")(pd.DataFrame({"a": [1]}), "../escaped", output_dir=out)
    if any(Path(tmp).glob("escaped*")): raise Wrong("a table was written outside output_dir")
    raise Wrong("a path-like name was accepted")


@probe("figures", "save_figure into an output_dir under a regular file", names=("output_dir", "not a directory"))
def save_figure_unwritable(tmp):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    (Path(tmp) / "f").write_text("x")
    api("neurocomp.figures:save_figure")(plt.figure(), "fig", output_dir=Path(tmp) / "f" / "out")


# ====================================================================================================================
# the runner
# ====================================================================================================================
def _neurocomp_dir() -> Path:
    import neurocomp
    return Path(neurocomp.__file__).resolve().parent


def _frame_files(tb) -> list[str]:
    return [f.filename for f in traceback.extract_tb(tb)]


def classify(p: Probe, exc: BaseException | None) -> tuple[str, str]:
    "The category of a probe's outcome, and a one-line detail."
    if exc is None:
        return (SILENT, "accepted without an error") if p.expect == "error" else (HANDLED, "valid result")
    one_line = lambda e: f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
    if isinstance(exc, Wrong): return SILENT, str(exc)[:300]
    if isinstance(exc, Lost): return LOST, str(exc)[:300]
    if isinstance(exc, Moved): return SKIPPED_API, str(exc)[:300]
    if isinstance(exc, Confusing): return CONFUSING, str(exc)[:300]
    if isinstance(exc, NoData): return SKIPPED_DATA, str(exc)[:300]
    if isinstance(exc, ProbeTimeout): return HUNG, f"no answer within {p.timeout:.0f} s"
    if isinstance(exc, subprocess.TimeoutExpired): return HUNG, f"a CLI run did not finish within {exc.timeout:.0f} s"
    if isinstance(exc, CLIFailure): return _classify_cli(p, exc)
    files = _frame_files(exc.__traceback__)
    package = str(_neurocomp_dir())
    in_package = [f for f in files if f.startswith(package)]
    innermost = files[-1] if files else ""
    if not in_package and not isinstance(exc, CLEAR_TYPES + (FloatingPointError, RuntimeError, AssertionError)):
        return PROBE_ERROR, f"{one_line(exc)} at {innermost}"
    if not in_package:
        return PROBE_ERROR, f"{one_line(exc)} (raised outside neurocomp, at {innermost})"
    if not innermost.startswith(package) and type(exc).__module__.split(".")[0] != "neurocomp":
        return RAW, f"{one_line(exc)} (from {Path(innermost).parent.name}/{Path(innermost).name})"
    if p.expect == "result": return CONFUSING, f"refused a valid input: {one_line(exc)}"
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, CLEAR_TYPES) and _names_match(p.names, message):
        return CLEAR, one_line(exc)
    return CONFUSING, one_line(exc)


def _names_match(names, text: str) -> bool:
    "Whether `text` names the problem: no names (any message does), or one entry present (a tuple entry: all its words)."
    text = text.lower()
    return not names or any(all(w.lower() in text for w in ((n,) if isinstance(n, str) else n)) for n in names)


def _classify_cli(p: Probe, exc: CLIFailure) -> tuple[str, str]:
    out = exc.output
    if "Traceback (most recent call last)" in out:
        frames = [line.strip() for line in out.splitlines() if line.strip().startswith('File "')]
        last = frames[-1] if frames else ""
        raised = [line for line in out.strip().splitlines() if line and not line.startswith(" ")][-1:]
        detail = f"CLI traceback: {raised[0] if raised else ''} ({last[:120]})"
        return (CONFUSING if "/neurocomp/" in last else RAW), detail[:300]
    text = " ".join(out.strip().splitlines()[-3:])
    if p.expect == "result": return CONFUSING, f"exit {exc.rc}: {text}"[:300]
    if _names_match(p.names, out): return CLEAR, f"exit {exc.rc}: {text}"[:300]
    return CONFUSING, f"exit {exc.rc}: {text}"[:300]


def _run_one(p: Probe) -> dict:
    "Run one probe in this process (the worker), under an alarm, in a fresh temporary folder."
    tmp = Path(tempfile.mkdtemp(prefix="probe-"))  # no probe words in paths: messages are searched for them
    saved = {k: os.environ.get(k) for k in ("NEUROCOMP_DATA", "NEUROCOMP_CACHE", "NEUROCOMP_MANIFEST")}
    os.environ["NEUROCOMP_DATA"] = str(tmp / "cache"); os.environ["NEUROCOMP_CACHE"] = str(tmp / "results")
    os.environ.pop("NEUROCOMP_MANIFEST", None)
    def alarm(*_): raise ProbeTimeout()
    old = signal.signal(signal.SIGALRM, alarm); signal.alarm(int(p.timeout))
    t0 = time.perf_counter(); exc = None
    try:
        with contextlib.redirect_stdout(sys.stderr): p.fn(tmp)
    except BaseException as e:  # noqa: BLE001 - every outcome is classified
        if isinstance(e, KeyboardInterrupt): raise
        exc = e
    finally:
        signal.alarm(0); signal.signal(signal.SIGALRM, old)
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)
    category, detail = classify(p, exc)
    return {"id": p.id, "area": p.area, "what": p.what, "expect": p.expect, "category": category, "detail": detail,
            "seconds": round(time.perf_counter() - t0, 2)}


def _limit_resources(address_space_gib: float):
    import resource
    limit = int(address_space_gib * 2 ** 30)
    with contextlib.suppress(ValueError, OSError): resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker(ids: list[str], address_space_gib: float):
    "Run probes in order, writing one JSON line per probe to the protocol stream (the real stdout)."
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the probes print goes to stderr (the log), not into the protocol
    _limit_resources(address_space_gib)
    by_id = {p.id: p for p in PROBES}
    for pid in ids:
        protocol.write(f"START {pid}\n")
        protocol.write("RESULT " + json.dumps(_run_one(by_id[pid])) + "\n")
    protocol.close()


def run_probes(probes: list[Probe], log_path: Path, address_space_gib: float) -> list[dict]:
    "Run probes in a worker subprocess; a probe that overruns its limit (+30 s) or kills the worker is recorded, the rest go on."
    results, pending = {}, [p.id for p in probes]
    by_id = {p.id: p for p in probes}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               MPLBACKEND="Agg", TQDM_DISABLE="1", PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with open(log_path, "a") as log:
        while pending:
            proc = subprocess.Popen([sys.executable, str(HERE), "--worker", f"--address-space-gib={address_space_gib}", *pending],
                                    stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)
            current, started, buffer = None, time.monotonic(), ""
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], 1.0)
                if ready:
                    line = proc.stdout.readline()
                    if not line:  # the worker exited
                        proc.wait()
                        if current:
                            results[current] = {"id": current, "area": by_id[current].area, "what": by_id[current].what,
                                                "expect": by_id[current].expect, "category": RAW,
                                                "detail": f"the process died (exit status {proc.returncode}): a crash inside a library",
                                                "seconds": round(time.monotonic() - started, 2)}
                            pending.remove(current); _report(results[current])
                        break
                    if line.startswith("START "):
                        current, started = line.split(None, 1)[1].strip(), time.monotonic()
                    elif line.startswith("RESULT "):
                        r = json.loads(line[7:]); results[r["id"]] = r; pending.remove(r["id"]); current = None; _report(r)
                if current and time.monotonic() - started > by_id[current].timeout + 30:
                    with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    results[current] = {"id": current, "area": by_id[current].area, "what": by_id[current].what,
                                        "expect": by_id[current].expect, "category": HUNG,
                                        "detail": f"no answer within {by_id[current].timeout:.0f} s (killed)", "seconds": round(time.monotonic() - started, 2)}
                    pending.remove(current); _report(results[current])
                    break
    return [results[p.id] for p in probes if p.id in results]


def _report(r):
    print(f"  {r['category']:<20} {r['id']:<45} {r['seconds']:6.1f}s", file=sys.stderr, flush=True)


def summarise(results: list[dict], compare: dict | None = None) -> str:
    counts = {c: sum(r["category"] == c for r in results) for c in CATEGORIES}
    lines = [f"{len(results)} probes", *(f"  {c:<22} {n}" for c, n in counts.items() if n)]
    worrying = [r for r in results if r["category"] not in (CLEAR, HANDLED)]
    if worrying:
        lines += ["", f"{'category':<20} {'probe':<42} detail"]
        for r in sorted(worrying, key=lambda r: (CATEGORIES.index(r["category"]), r["id"])):
            lines.append(f"{r['category']:<20} {r['id']:<42} {r['what']} -> {r['detail']}"[:260])
    if compare:
        before = {r["id"]: r["category"] for r in compare.get("probes", [])}
        changed = [(r["id"], before[r["id"]], r["category"]) for r in results if r["id"] in before and before[r["id"]] != r["category"]]
        lines += ["", f"changed since {compare.get('created', 'the earlier report')}: {len(changed)}"]
        lines += [f"  {pid:<45} {a} -> {b}" for pid, a, b in changed]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="neurocomp robustness probes (issue 17)")
    ap.add_argument("--json", default="robustness_report.json", help="report file (default robustness_report.json)")
    ap.add_argument("--only", nargs="+", help="run the probes whose id contains one of these words")
    ap.add_argument("--compare", help="an earlier report: list the probes whose category changed")
    ap.add_argument("--list", action="store_true", help="list the probes and exit")
    ap.add_argument("--address-space-gib", type=float, default=8.0, help="address-space limit of the worker (default 8 GiB)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker: return worker(args.ids, args.address_space_gib)
    probes = [p for p in PROBES if not args.only or any(w in p.id for w in args.only)]
    if args.list:
        for p in probes: print(f"{p.id:<45} expect {p.expect:<6} {p.what}")
        print(f"{len(probes)} probes"); return 0
    log = Path(tempfile.gettempdir()) / f"robustness_probes_{os.getpid()}.log"
    print(f"running {len(probes)} probes (worker log: {log})", file=sys.stderr)
    t0 = time.perf_counter()
    results = run_probes(probes, log, args.address_space_gib)
    compare = json.loads(Path(args.compare).read_text()) if args.compare else None
    print(summarise(results, compare))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "seconds": round(time.perf_counter() - t0, 1),
              "counts": {c: sum(r["category"] == c for r in results) for c in CATEGORIES}, "probes": results}
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"\n{time.perf_counter() - t0:.0f} s; report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
