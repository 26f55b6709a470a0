"""``perf-sdk demo --help`` reads as plain text in a terminal (it once showed raw reStructuredText)."""

from __future__ import annotations

import pytest

from perf_sdk.cli import main


def test_demo_help_is_plain_text_with_its_paragraphs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out and "→" not in out
    assert "\n\nStarts the local Performance Platform" in out  # paragraphs kept, not run together
    assert "perf-sdk-\n" not in out  # no name broken across lines
    assert "emptied first" in out  # it says what happens to an existing --output folder
