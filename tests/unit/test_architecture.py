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
