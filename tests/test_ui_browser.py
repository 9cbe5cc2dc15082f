"""The Prefect UI in a real headless browser (Debian's ``chromium``, driven by Playwright):
a real ``prefect server start`` with its UI, a real ``vrme run`` against it, then the flow-run
page and its artifacts as a researcher opens them. The report's plots must load (every image's
naturalWidth > 0), the progress artifact must read 100 %, the run page must offer Retry.

``.ci/run`` installs chromium when it can (root, apt); elsewhere install it with
``apt-get install chromium`` (or point ``VRME_CHROMIUM`` at a Chromium binary).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT, real_prefect_server, tiny_config_text

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("VRME_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """``prefect server start`` with the UI on a free port; yields (ui_url, api_url, env)."""
    with real_prefect_server(tmp_path_factory.mktemp("ui-home"), ui=True) as (api, env):
        yield api[:-len("/api")], api, env


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium); .ci/run installs it")
def test_run_page_and_artifacts_render_in_chromium(ui_server, tiny_synth_root, tmp_path):
    from playwright.sync_api import sync_playwright
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ui, api, env = ui_server
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work",
                                    "orchestration: {retries: 0}\n"))
    proc = subprocess.run([str(BIN / "vrme"), "run", "--config", str(cfg)], env=env,
                          cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        run = client.read_flow_runs()[0]
        arts = {a.type: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{ui}/runs/flow-run/{run.id}", wait_until="networkidle")
            page.get_by_role("button", name="Retry").wait_for(timeout=30000)
            assert page.get_by_text("run:tiny").first.is_visible()

            page.goto(f"{ui}/artifacts/artifact/{arts['markdown'].id}", wait_until="networkidle")
            page.wait_for_selector("img", timeout=30000)
            page.wait_for_function("() => [...document.images].every(i => i.complete)",
                                   timeout=30000)
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) >= 3 and all(w > 0 for w in widths), widths
            assert page.get_by_text("report.html").first.is_visible()
            page.screenshot(path=str(tmp_path / "report-artifact.png"))

            page.goto(f"{ui}/artifacts/artifact/{arts['progress'].id}", wait_until="networkidle")
            page.get_by_text("Progress: 100%").wait_for(timeout=30000)

            page.goto(f"{ui}/artifacts/artifact/{arts['table'].id}", wait_until="networkidle")
            page.get_by_text("fold_strs").wait_for(timeout=30000)
        finally:
            browser.close()
