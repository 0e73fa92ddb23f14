"""Generated documents stay in step with the code."""

import re
from pathlib import Path

import pytest

from gateway import config
from gateway.profiles import load_profiles

ROOT = Path(__file__).resolve().parents[2]


def test_config_doc_is_current() -> None:
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    assert config.markdown_table() in doc, "docs/CONFIG.md is stale: run `agent-gateway config-doc` and paste the table"


def test_example_profiles_load() -> None:
    profiles = load_profiles(ROOT / "docs" / "profiles.example.toml")
    assert set(profiles) == {"default", "readonly"}


@pytest.mark.parametrize("name", ["OPERATIONS.md", "DEPLOY.md"])
def test_operations_doc_names_real_tests(name: str) -> None:
    """docs/OPERATIONS.md and docs/DEPLOY.md point each failure mode at the test that proves it; those tests must exist."""
    doc = (ROOT / "docs" / name).read_text()
    names = set(re.findall(r"\btest_\w+", doc))
    modules = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    functions = {m for p in (ROOT / "tests").rglob("test_*.py") for m in re.findall(r"def (test_[a-z0-9_]+)", p.read_text())}
    assert names and names <= modules | functions, sorted(names - modules - functions)
