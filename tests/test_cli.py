"""`cotlab --help` lists every command with its description; each command's help shows its
defaults and an example; `cotlab aggregate --help` lists the cards it can take."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotlab.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_top_help_lists_every_command_with_its_description(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per command
    text = help_text(capsys)
    lines = [line.strip() for line in text.splitlines()]
    for name, (_, description, _) in COMMANDS.items():
        assert f"{name} {description}" in [" ".join(line.split()) for line in lines], name
    assert "command" not in lines  # no bare "positional arguments: command" entry


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_an_example(capsys, name):
    text = help_text(capsys, name)
    assert f"example:\n  cotlab {name} " in text


def test_evaluate_help_shows_defaults_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = help_text(capsys, "evaluate")
    assert "rows per decoding batch (default: 64)" in text
    assert "(default: auto)" in text
    assert "(default: None)" not in text and "(default: [])" not in text
    assert "(default: all)" in text and "all) (default" not in text  # a default the help names is not repeated


def test_aggregate_help_lists_the_cards_of_the_default_config_dir(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(REPO)
    text = " ".join(help_text(capsys, "aggregate").split())
    cards = sorted(p.stem for p in (REPO / "config" / "experiments").glob("*.yaml"))
    assert "fig_vocab" in cards and f"cards in config/experiments/: {', '.join(cards)}; or `claims`" in text

    monkeypatch.chdir(tmp_path)  # no config/ here: help still works and says where it looked
    text = " ".join(help_text(capsys, "aggregate").split())
    assert "cards: none found in config/experiments/" in text
