"""`cotlab plan`: the throughput model's budget of experiments.md §5.1 and its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import STAGE1
from cotlab.cli import main as cli
from cotlab.plan import plan_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"



def test_plan_matches_the_reduced_budget() -> None:
    rows, gpus = plan_table(STAGE1, "reduced", str(CONFIG))
    by = {r["experiment"]: r for r in rows}
    assert gpus == 1
    # experiments.md §5.1: fig_vocab 18 runs, 1.01B tokens, 2.03 h; stage 1 about 5.9 H100-hours
    assert (by["fig_vocab"]["train"], round(by["fig_vocab"]["train_tokens"] / 1e9, 2)) == (18, 1.01)
    assert by["fig_vocab"]["gpu_hours"] == pytest.approx(2.03, abs=0.01)
    assert by["total"]["gpu_hours"] == pytest.approx(5.9, abs=0.3)
    paper, _ = plan_table(STAGE1, "paper", str(CONFIG))
    assert paper[-1]["train"] == 150  # and about 107B tokens, 210 H100-hours
    assert paper[-1]["train_tokens"] / 1e9 == pytest.approx(107, rel=0.05)
    assert paper[-1]["gpu_hours"] == pytest.approx(210, rel=0.1)


def test_plan_cli_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--scale", "reduced", "--set", "experiments=[fig_vocab,fig_examples]"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fig_vocab\s+6\s+18\s+18\s+0\s+1\s+1,013\.8\s+2\.03$", out, re.M), out
    assert re.search(r"^total\s+", out, re.M)
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(CONFIG),
                "--set", "scale=huge"]) == 2
    assert "scale='huge'" in capsys.readouterr().err


@pytest.mark.parametrize("cadence", [-5, 0])
def test_plan_rejects_a_card_with_a_bad_eval_cadence(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     cadence: int) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "scales.yaml").write_text((CONFIG / "scales.yaml").read_text())
    card = (CONFIG / "experiments" / "quickstart.yaml").read_text()
    (tmp_path / "experiments" / "quickstart.yaml").write_text(card.replace("eval_every_seqs: 6400",
                                                                           f"eval_every_seqs: {cadence}"))
    assert cli(["plan", "--config", str(CONFIG / "config.yaml"), "--config-dir", str(tmp_path),
                "--set", "experiments=[quickstart]", "--scale", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err == (f"cotlab plan: error: {tmp_path / 'experiments' / 'quickstart.yaml'}: "
                   f"scales.smoke.base.eval_every_seqs={cadence}: must be a positive integer\n")
