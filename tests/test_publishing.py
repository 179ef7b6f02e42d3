"""The book's publishing workflow is a valid GitHub Actions workflow (checked with check-jsonschema's
vendored schema, offline) and builds the committed chapters with warnings as errors."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
pytestmark = pytest.mark.skipif(
    shutil.which("check-jsonschema") is None, reason="check-jsonschema missing: pip install -e '.[dev]'"
)


def _check(path):
    return subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True
    )


def test_workflow_is_valid_and_builds_the_book_strictly():
    r = _check(WORKFLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    text = WORKFLOW.read_text()
    assert "jupyter-book build -W" in text and "actions/deploy-pages" in text


def test_the_checker_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert _check(broken).returncode != 0
