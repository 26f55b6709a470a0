"""docs/concepts/architecture.md names every module of the tree, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "perf_sdk"
PAGE = ROOT / "docs" / "concepts" / "architecture.md"


def modules_in_tree() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}


def modules_on_the_page() -> set[str]:
    return set(re.findall(r"`([\w/]+\.py)`", PAGE.read_text(encoding="utf-8")))


def test_every_module_is_on_the_architecture_page() -> None:
    missing = sorted(modules_in_tree() - modules_on_the_page())
    assert not missing, f"docs/concepts/architecture.md does not say what these modules are for: {missing}"


def test_the_page_names_no_module_that_is_gone() -> None:
    stale = sorted(modules_on_the_page() - modules_in_tree())
    assert not stale, f"docs/concepts/architecture.md names modules that do not exist: {stale}"


def test_every_test_the_guarantees_page_names_exists() -> None:
    """docs/guarantees.md names the test behind each promise: each must be a real test."""
    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    missing = []
    last_file: Path | None = None
    for path, name in re.findall(r"`(?:(tests/[\w/]+\.py|[\w]+\.py))?(?:::(\w+))?`", text):
        if path:
            found = sorted(ROOT.glob(f"tests/**/{Path(path).name}")) if not path.startswith("tests/") else [ROOT / path]
            if not found or not found[0].exists():
                missing.append(path)
                continue
            last_file = found[0]
        if name:
            files = [last_file] if path or last_file else []
            if not any(f is not None and f"def {name}(" in f.read_text(encoding="utf-8") for f in files):
                candidates = list(ROOT.glob("tests/**/*.py"))
                if not any(f"def {name}(" in f.read_text(encoding="utf-8") for f in candidates):
                    missing.append(name)
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"
