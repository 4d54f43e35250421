"""JupyterLab as a user gets it: `neurocomp lab` starts a server on 127.0.0.1 (a token, a free port), the notebooks are
listed through its contents API, and a small notebook runs on a kernel of that server, over its websocket, with the
checkout's package; its plotly figure comes out in JupyterLab's form and as offline HTML. The test stops the server
itself, within bounded time, whatever happens."""
import json, os, re, secrets, signal, socket, subprocess, sys, time, uuid
from pathlib import Path
import nbformat
import pytest
import requests
from neurocomp.docs import checkout_root

ROOT = checkout_root()
START_TIMEOUT, CELL_TIMEOUT = 120, 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


class Lab:
    "A running `neurocomp lab` server."
    def __init__(self, port: int, token: str, process: subprocess.Popen, log: Path):
        self.url, self.token, self.process, self.log = f"http://127.0.0.1:{port}", token, process, log

    def get(self, path: str, **kw):
        return requests.get(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}, timeout=30, **kw)

    def post(self, path: str, body: dict | None = None):
        return requests.post(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}, json=body, timeout=30)

    def delete(self, path: str):
        return requests.delete(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}, timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("jupyterlab")
    home = tmp_path_factory.mktemp("lab")
    port, token = _free_port(), secrets.token_hex(16)
    # the server's own state (runtime files, settings, workspaces) in a throwaway folder, not the user's
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_CONFIG_DIR=str(home / "config"))
    options = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", "--ServerApp.shutdown_no_activity_timeout=600"]
    if hasattr(os, "geteuid") and os.geteuid() == 0: options.append("--allow-root")  # CI runs as root
    log = home / "lab.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", "import sys; from neurocomp.cli import main; sys.exit(main())", "lab", *options],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home, start_new_session=True)
    server = Lab(port, token, process, log)
    try:
        deadline = time.time() + START_TIMEOUT
        while True:
            if process.poll() is not None: pytest.fail(f"neurocomp lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if server.get("/api/status").status_code == 200: break
            except requests.ConnectionError: pass
            if time.time() > deadline: pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        try: server.post("/api/shutdown")
        except requests.RequestException: pass
        try: process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try: process.wait(timeout=10)
            except subprocess.TimeoutExpired: os.killpg(process.pid, signal.SIGKILL); process.wait(timeout=10)


def test_lab_serves_the_notebooks(lab):
    assert lab.get("/api/status").json()["started"]
    assert requests.get(f"{lab.url}/api/contents/nbs", timeout=30).status_code == 403, "the token must be required"
    listing = lab.get("/api/contents/nbs").json()
    names = {entry["name"]: entry["type"] for entry in listing["content"]}
    assert names.get("index.ipynb") == "notebook" and names.get("figures") == "directory" and "06_docs.ipynb" in names
    figures = {entry["name"] for entry in lab.get("/api/contents/nbs/figures").json()["content"]}
    assert "neurocomp_templates_overview.ipynb" in figures
    index = lab.get("/api/contents/nbs/index.ipynb?content=1").json()
    assert index["type"] == "notebook" and index["content"]["cells"][0]["source"].startswith("# neurocomp")
    # the landing page is JupyterLab itself, opening the README notebook
    landing = requests.get(f"{lab.url}/?token={lab.token}", allow_redirects=False, timeout=30)
    assert landing.status_code in (301, 302) and "/lab/tree/nbs/index.ipynb" in landing.headers["Location"]
    page = lab.get("/lab/tree/nbs/index.ipynb")
    assert page.status_code == 200 and "jupyter-config-data" in page.text


def _execute(ws, session: str, code: str) -> list[dict]:
    "Run `code` on the kernel behind websocket `ws`; its outputs in notebook form (errors included)."
    import websocket
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                                   "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                                    "allow_stdin": False, "stop_on_error": True}}))
    outputs, idle, replied, deadline = [], False, False, time.time() + CELL_TIMEOUT
    while not (idle and replied):
        if time.time() > deadline: raise TimeoutError(f"no answer within {CELL_TIMEOUT} s to:\n{code}")
        try: msg = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException: continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id: continue
        kind = msg["header"]["msg_type"]
        if msg["channel"] == "shell" and kind == "execute_reply": replied = True
        elif kind == "status": idle = msg["content"]["execution_state"] == "idle"
        elif kind in ("stream", "display_data", "execute_result", "error"): outputs.append(nbformat.v4.output_from_msg(msg))
    return outputs


def test_a_notebook_runs_on_a_lab_kernel(lab, tmp_path):
    websocket = pytest.importorskip("websocket")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, neurocomp\nprint(os.path.realpath(neurocomp.__file__)); print(os.getcwd())"),
                nbformat.v4.new_code_cell("import plotly.graph_objects as go\nimport plotly.io as pio\nfrom neurocomp.figures import NOTEBOOK_RENDERER\n"
                                          "assert pio.renderers.default == NOTEBOOK_RENDERER, pio.renderers.default\n"
                                          "fig = go.Figure(go.Scatter(y=[1, 3, 2]))\nfig"),
                nbformat.v4.new_code_cell("from neurocomp.data import working_grid\nworking_grid(4.0).shape")]
    kernel = lab.post("/api/kernels", {"name": "python3", "path": "nbs"}).json()
    session = uuid.uuid4().hex
    ws = websocket.create_connection(f"ws://127.0.0.1:{lab.url.rsplit(':', 1)[1]}/api/kernels/{kernel['id']}/channels?session_id={session}",
                                     header=[f"Authorization: token {lab.token}"], timeout=5)
    try:
        for cell in nb.cells:
            cell.outputs = _execute(ws, session, cell.source)
    finally:
        ws.close(); lab.delete(f"/api/kernels/{kernel['id']}")
    nbformat.write(nb, tmp_path / "executed.ipynb")
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, "\n".join("\n".join(e.traceback) for e in errors)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).split()
    assert printed[0] == str((ROOT / "neurocomp" / "__init__.py").resolve()) and printed[1] == str(ROOT / "nbs")
    figure = [o for o in nb.cells[1].outputs if o.output_type in ("display_data", "execute_result")]
    assert figure and "application/vnd.plotly.v1+json" in figure[-1].data  # what JupyterLab draws
    html = "".join(o.data.get("text/html", "") for o in figure)
    assert "Plotly.newPlot" in html and not re.search(r"<script[^>]*\bsrc=[\"']https?:", html)  # what nbconvert shows, plotly.js inline
    assert any("(46, 55, 46)" in o.data.get("text/plain", "") for o in nb.cells[2].outputs if "data" in o)
