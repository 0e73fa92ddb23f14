"""Generated documents stay in step with the code."""

from pathlib import Path

from gateway import config
from gateway.profiles import load_profiles

ROOT = Path(__file__).resolve().parents[2]


def test_config_doc_is_current() -> None:
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    assert config.markdown_table() in doc, "docs/CONFIG.md is stale: run `agent-gateway config-doc` and paste the table"


def test_example_profiles_load() -> None:
    profiles = load_profiles(ROOT / "docs" / "profiles.example.toml")
    assert set(profiles) == {"default", "readonly"}
