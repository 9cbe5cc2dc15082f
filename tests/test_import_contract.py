"""The import contract: the library (vrme/) never imports prefect, tasks or flows.

Two checks: ruff's banned-api rule (configured in pyproject.toml, run by ``make lint``) must
flag such an import anywhere under vrme/ and allow it in tasks/ and flows/; and importing every
vrme module in a fresh interpreter must load none of them (this also catches an import made
through ``importlib`` or through a third package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")

FORBIDDEN = ("prefect", "prefect_dask", "tasks", "flows")


def _ruff(code: str, filename: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUFF, "check", "--no-cache", "--output-format", "concise",
                           "--stdin-filename", filename, "-"], input=code, text=True,
                          capture_output=True, cwd=ROOT)


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (it is in the test extra)")
@pytest.mark.parametrize("line", ["import prefect", "from prefect import flow",
                                  "from prefect.artifacts import create_markdown_artifact",
                                  "from tasks.pipeline import run_align",
                                  "from flows.cli import app",
                                  "from prefect_dask import DaskTaskRunner"])
@pytest.mark.parametrize("where", ["vrme/probe.py", "vrme/training/probe.py"])
def test_ruff_refuses_orchestration_imports_in_the_library(line, where):
    code = f"def f():\n    {line}\n    return None\n"
    res = _ruff(code, where)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "TID251" in res.stdout and "vrme/" in res.stdout
    # the same line is allowed where orchestration lives
    for ok in ("flows/probe.py", "tasks/probe.py"):
        assert "TID251" not in _ruff(code, ok).stdout


def test_importing_the_library_loads_no_orchestration():
    code = (
        "import importlib, pkgutil, sys, vrme\n"
        "for m in pkgutil.walk_packages(vrme.__path__, 'vrme.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(' '.join(bad))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"importing vrme loaded: {res.stdout.strip()}"


def test_a_command_checks_and_names_its_run_without_importing_prefect(tiny_synth_root, tmp_path):
    """With ``PREFECT_API_URL`` set, the command's own part of a run (the CLI, loading and
    checking the config and the dataset's labels, naming and tagging the run, the launcher)
    imports no Prefect: the flow's engine process imports it meanwhile, and the command's
    share of the start-up stays short."""
    from tests.helpers import tiny_config_text

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_config_text(tiny_synth_root, tmp_path / "work"))
    code = (
        "import sys\n"
        "import flows.cli, flows.launch\n"
        "from flows.commands._common import flow_parameters, load\n"
        "from flows.naming import cli_command, run_tags, run_title\n"
        f"cfg = load({str(cfg)!r}, [])\n"
        f"p = flow_parameters({str(cfg)!r}, [], None, None)\n"
        "run_title(cfg.run_name, []), run_tags(cfg.run_name, p['config'], [])\n"
        "cli_command('features', p['config'])\n"
        "print(' '.join(sorted(n for n in sys.modules if n.split('.')[0] == 'prefect')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"the command loaded: {res.stdout.strip()[:300]}"
