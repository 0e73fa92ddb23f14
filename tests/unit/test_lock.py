"""The lock (requirements/*.txt) is complete, hashed, agrees with pyproject.toml, and is what runs.

Installs never resolve (scripts/install.sh: --require-hashes), so these catch a pyproject.toml edit
not followed by `make lock`, two lock files that disagree, and an environment not built from the lock.
"""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def read_lock(name: str) -> dict[NormalizedName, tuple[Requirement, int]]:
    """Each locked requirement by name, with how many hashes it carries."""
    entries: dict[NormalizedName, tuple[Requirement, int]] = {}
    current: NormalizedName | None = None
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        text = line.strip().removesuffix("\\").strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("--hash=sha256:"):
            assert current is not None, line
            req, hashes = entries[current]
            entries[current] = (req, hashes + 1)
            continue
        req = Requirement(text)
        current = canonicalize_name(req.name)
        assert current not in entries, f"{name}: {req.name} locked twice"
        entries[current] = (req, 0)
    return entries


RUNTIME = read_lock("runtime.txt")
TEST = read_lock("test.txt")


def pinned(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", req
    return spec.version


@pytest.mark.parametrize("lock", [RUNTIME, TEST], ids=["runtime", "test"])
def test_every_entry_is_pinned_and_hashed(lock: dict[NormalizedName, tuple[Requirement, int]]) -> None:
    for req, hashes in lock.values():
        pinned(req)
        assert hashes > 0, f"{req} has no hash"


def test_lock_satisfies_pyproject() -> None:
    """Every declared dependency is locked at a version its specifier allows (else: `make lock`)."""
    declared = {
        "runtime.txt": [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]],
        "test.txt": [
            *PYPROJECT["project"]["dependencies"],
            *PYPROJECT["project"]["optional-dependencies"]["test"],
            *PYPROJECT["build-system"]["requires"],
        ],
    }
    for name, reqs in declared.items():
        lock = read_lock(name)
        for text in reqs:
            req = Requirement(text)
            assert canonicalize_name(req.name) in lock, f"{req.name} is not in requirements/{name}: run `make lock`"
            version = pinned(lock[canonicalize_name(req.name)][0])
            assert req.specifier.contains(version, prereleases=True), f"{name}: {req.name}=={version} violates {req}"


def test_runtime_lock_is_the_test_lock_less_test_tools() -> None:
    """The image (runtime.txt) runs exactly the versions the suite (test.txt) tested."""
    assert set(RUNTIME) < set(TEST)
    for name, (req, _) in RUNTIME.items():
        assert pinned(req) == pinned(TEST[name][0]), name
    assert "pytest" not in RUNTIME


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_environment_is_installed_from_the_lock() -> None:
    """The suite runs on the locked versions (the SDK, hence the CLI it bundles, above all)."""
    wrong = {
        name: (installed(name), pinned(req))
        for name, (req, _) in TEST.items()
        if req.marker is None or req.marker.evaluate()
        if installed(name) != pinned(req)
    }
    assert not wrong, f"installed != locked: {wrong}; run `make install-test`"
