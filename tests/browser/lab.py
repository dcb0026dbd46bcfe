"""Helpers for the browser tests: a real `jupyter lab` process and a page object for the panel.

Selectors live here, in one place; the tests read like what a person does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
#: Headless Debian Chromium flags known to work here (see shared notes on the machine).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabServer:
    """`jupyter lab` on 127.0.0.1 with a token, rooted in a temporary directory."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = os.urandom(16).hex()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "jupyter-lab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        settings = self.home / "settings"
        notif = settings / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True, exist_ok=True)
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NBMLOPS_", "JPY_"))}
        venv_bin = str(Path(sys.executable).parent)
        env.update({
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.home / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "IPYTHONDIR": str(self.home / "ipython"),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })
        return env

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ip=127.0.0.1", f"--port={self.port}", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--ServerApp.port_retries=0",
               "--LabApp.news_url=None", "--ServerApp.disable_check_xsrf=False"]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log()}")
            try:
                self.get("api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not start in {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def get(self, path: str, token: bool = True) -> Any:
        req = urllib.request.Request(f"{self.url}/{path}")
        if token:
            req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextmanager
def open_lab_page(lab: LabServer) -> Iterator[LabPage]:
    """Headless Chromium (the Debian build, never a downloaded one) on ``lab``'s page object."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(20000)
        try:
            yield LabPage(page, lab)
        finally:
            browser.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep waiting, report the last failure
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class LabPage:
    """Page object: JupyterLab with the MLOps panel."""

    PANEL_TAB = '.jp-SideBar.jp-mod-left [data-id="nbmlops-panel"]'
    PANEL = "#nbmlops-panel"
    CELL_ROWS = "#nbmlops-panel .nbmlops-cellrow"
    MESSAGE = "#nbmlops-panel .nbmlops-notebook-view .nbmlops-message"
    ACTIVE_CELL = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell.jp-mod-active"

    def __init__(self, page: Any, lab: LabServer) -> None:
        self.page = page
        self.lab = lab
        self.dialogs: list[str] = []
        page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog: Any) -> None:
        if dialog.type == "beforeunload":  # leaving a notebook with unsaved outputs
            dialog.accept()
            return
        self.dialogs.append(f"{dialog.type}: {dialog.message}")  # alert/confirm/prompt
        dialog.dismiss()

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """``wait_for`` that leaves a screenshot in test-artifacts/ when it times out."""
        try:
            return wait_for(check, timeout, what)
        except AssertionError:
            self.screenshot("failure-" + "".join(c if c.isalnum() else "-" for c in what) + ".png")
            raise

    def open_notebook(self, name: str) -> None:
        self.page.goto(f"{self.lab.url}/lab/tree/{name}?token={self.lab.token}")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60000)
        # The kernel dialog ("Select Kernel") may show late on a loaded machine, and the kernel
        # does not start until it is answered: keep answering it until the kernel is idle.
        idle = self.page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']")
        deadline = time.monotonic() + 120
        while True:
            self.accept_kernel_dialog()
            try:
                idle.first.wait_for(state="visible", timeout=5000)
                return
            except Exception:  # noqa: BLE001 - not idle yet
                if time.monotonic() > deadline:
                    self.screenshot("failure-kernel-not-idle.png")
                    raise

    def open_file(self, name: str) -> None:
        """Open a text file (e.g. a pipeline.yaml) in JupyterLab's editor."""
        self.page.goto(f"{self.lab.url}/lab/tree/{name}?token={self.lab.token}")
        self.page.wait_for_selector(".jp-FileEditor .cm-content", timeout=60000)

    def sidebar_width(self) -> float:
        box = self.page.locator(self.PANEL).bounding_box()
        return float(box["width"]) if box else 0.0

    def accept_kernel_dialog(self) -> None:
        dialog = self.page.locator(".jp-Dialog")
        try:
            dialog.wait_for(state="visible", timeout=1500)
        except Exception:  # noqa: BLE001 - no dialog: the usual case
            return
        self.page.locator(".jp-Dialog .jp-mod-accept").first.click()

    def run_all(self) -> None:
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def widen_sidebar(self, px: int) -> None:
        """Drag the handle between the left sidebar and the main area to the right."""
        handle = self.page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
        box = handle.bounding_box()
        if box is None:
            return
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + px, y, steps=5)
        self.page.mouse.up()

    def open_panel(self) -> None:
        self.page.click(self.PANEL_TAB)
        self.page.wait_for_selector(self.PANEL, state="visible")

    def tab(self, label: str) -> None:
        """Show a tab of the panel by its accessible name (tabs may show only their icon)."""
        self.page.locator(self.PANEL).get_by_role("tab", name=label, exact=True).click()

    TABS = "#nbmlops-panel .lm-TabBar-tab"

    def tabs(self) -> list[dict[str, Any]]:
        """Each tab of the panel: accessible name, tooltip, whether its label shows."""
        return list(self.page.eval_on_selector_all(self.TABS, """tabs => tabs.map(t => {
            const label = t.querySelector('.lm-TabBar-tabLabel');
            return {name: t.getAttribute('aria-label'), tooltip: t.getAttribute('title'),
                    label_shown: !!label && label.getClientRects().length > 0,
                    icon: !!t.querySelector('.lm-TabBar-tabIcon svg')};
        })"""))

    def clipped(self, selector: str) -> list[str]:
        """Shown elements matching ``selector`` inside the panel whose content is cut: wider
        than their box (scrollWidth > clientWidth), or reaching past the panel's right edge."""
        return list(self.page.evaluate("""([panelSel, sel]) => {
            const panel = document.querySelector(panelSel).getBoundingClientRect();
            const out = [];
            for (const el of document.querySelectorAll(sel)) {
                if (!el.getClientRects().length) continue;  // not shown
                const r = el.getBoundingClientRect();
                if (el.scrollWidth > el.clientWidth + 1 || r.right > panel.right + 0.5
                        || r.left < panel.left - 0.5) {
                    out.push(`${el.textContent || el.getAttribute('aria-label')} `
                             + `(${el.scrollWidth}/${el.clientWidth}px, right ${r.right} > ${panel.right})`);
                }
            }
            return out;
        }""", [self.PANEL, selector]))

    def header_view(self) -> str:
        return str(self.page.locator(f"{self.PANEL} .nbmlops-header-view").inner_text())

    def rows(self) -> Any:
        return self.page.locator(self.CELL_ROWS)

    # -- the Pipelines tab

    PIPELINES = "#nbmlops-panel .nbmlops-pipelines-view"

    def pipeline_row(self, path: str) -> Any:
        return self.page.locator(f"{self.PIPELINES} tr.nbmlops-pipelinerow[data-path='{path}']")

    def param_input(self, name: str) -> Any:
        return self.page.locator(f"{self.PIPELINES} input[data-param='{name}']")

    def pipeline_button(self, label: str) -> Any:
        return self.page.locator(f"{self.PIPELINES} .nbmlops-pipeline-form button", has_text=label)

    def step_states(self) -> dict[str, str]:
        """Step name -> state of the shown pipeline run (its steps table)."""
        rows = self.page.locator(f"{self.PIPELINES} table[aria-label='Steps'] tr.nbmlops-steprow")
        return {rows.nth(i).get_attribute("data-step"): rows.nth(i).get_attribute("data-state")
                for i in range(rows.count())}

    def dag_states(self) -> dict[str, str]:
        nodes = self.page.locator(f"{self.PIPELINES} svg.nbmlops-dag g.nbmlops-dag-node")
        return {nodes.nth(i).get_attribute("data-step"): nodes.nth(i).get_attribute("data-state")
                for i in range(nodes.count())}

    def shown_run_id(self) -> str:
        return str(self.page.locator(f"{self.PIPELINES} .nbmlops-pipeline-run .nbmlops-runline "
                                     "span[title]").first.get_attribute("title"))

    def active_cell_text(self) -> str:
        return str(self.page.locator(self.ACTIVE_CELL).inner_text())

    def screenshot(self, name: str, target: Path | None = None) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
        return path
