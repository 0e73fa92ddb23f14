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
    assert set(profiles) == {"default", "readonly", "workspace"}


@pytest.mark.parametrize("name", ["OPERATIONS.md", "DEPLOY.md"])
def test_operations_doc_names_real_tests(name: str) -> None:
    """docs/OPERATIONS.md and docs/DEPLOY.md point each failure mode at the test that proves it; those tests must exist."""
    doc = (ROOT / "docs" / name).read_text()
    names = set(re.findall(r"\btest_\w+", doc))
    modules = {p.stem for p in (ROOT / "tests").rglob("test_*.py")}
    functions = {m for p in (ROOT / "tests").rglob("test_*.py") for m in re.findall(r"def (test_[a-z0-9_]+)", p.read_text())}
    assert names and names <= modules | functions, sorted(names - modules - functions)


def test_sdk_coverage_names_every_client_method_and_option() -> None:
    """docs/SDK_COVERAGE.md accounts for the whole SDK surface: a new method or option fails here
    until someone decides what clients get of it."""
    import dataclasses
    import inspect

    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

    doc = (ROOT / "docs" / "SDK_COVERAGE.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", doc, re.MULTILINE))
    methods = {n for n, _ in inspect.getmembers(ClaudeSDKClient, inspect.isfunction) if not n.startswith("_")}
    fields = {f.name for f in dataclasses.fields(ClaudeAgentOptions)}
    assert methods | fields <= rows, sorted((methods | fields) - rows)
    assert rows <= methods | fields, sorted(rows - methods - fields)
