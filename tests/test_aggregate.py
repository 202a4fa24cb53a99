"""`cotlab aggregate` on fixed synthetic metrics: exact table values and non-empty figures."""

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cotlab import aggregate
from cotlab.analysis.tables import wilson_interval
from cotlab.cards import card_ids, points
from cotlab.config import ConfigError, DataConfig
from cotlab.data.coverage import coverage_report
from cotlab.data.store import open_dataset, write_dataset
from cotlab.jobs import coverage_sizes, workflow_jobs
from cotlab.layout import Layout

PLOT = {"kind": "curves", "x": "step", "y": "answer_acc", "hue": "model", "style": "format",
        "col": "vocab_size", "row": None, "refs": ["majority_baseline"], "logx": False}
STEPS = [0, 10, 20, 30]
CURVES = {  # (V, format) -> answer_acc at STEPS; majority baseline 0.2 everywhere
    (32, "cot"): [0.1, 0.3, 0.6, 0.9],
    (32, "standard"): [0.1, 0.2, 0.3, 0.4],
    (64, "cot"): [0.2, 0.2, 0.2, 0.2],
    (64, "standard"): [0.0, 0.1, 0.1, 0.1],
}


GLOBAL = {32: 0.15, 64: 0.3}  # global-majority share: below the in-context majority at V=32, above at 64


def synthetic(model: str = "tf4") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    runs, curves, finals = [], [], []
    for (V, fmt), acc in CURVES.items():
        run_id = f"V{V}-{model}-{fmt}"
        data = {"vocab_size": V, "n_dims": 4, "n_inputs": 4, "n_parents": 2, "chain_length": 2, "n_examples": 8,
                "activation": "leaky_relu", "h_num_layers": 1, "fixed_dag": False, "fixed_h": False,
                "num_unique_h": None, "special_tokens": False}
        runs.append({"run_id": run_id, "data_id": f"V{V}", "card": "toy", "source": "toy", "scale": "smoke",
                     "model": model, "size": f"smoke-{model}", "format": fmt, "seed": 42, "vocab_size": V,
                     "data": data, "train": {"n_train": 480, "batch_size": 16, "lr": 1e-3, "n_eval": 100}})
        for step, a in zip(STEPS, acc):
            curves.append({"run_id": run_id, "step": step, "seqs_seen": 16 * step, "answer_acc": a,
                           "chain_acc_0": a, "majority_baseline": 0.2, "global_majority_baseline": GLOBAL[V],
                           "train_loss": 2.0 - a, "eval_loss": 2.1 - a, "embed_sim": a / 2, "parent_prec": np.nan,
                           "parent_chance": 0.5, "lr": 1e-3, "n_eval": 100})
        for with_cot in (True, False):
            finals.append({"run_id": run_id, "trained_format": fmt, "format": "cot" if with_cot else "standard",
                           "force": "", "drop_k": 0, "with_cot": with_cot, "cross_format": (fmt == "cot") != with_cot,
                           "n": 100.0, "answer_acc": acc[-1] if (fmt == "cot") == with_cot else 0.2,
                           "answer_acc_lo": 0.0, "answer_acc_hi": 1.0, "embed_sim": acc[-1] / 2})
    return pd.DataFrame(runs), pd.DataFrame(curves), pd.DataFrame(finals)


def test_aggregate_of_synthetic_metrics_gives_tidy_curves_and_summary(tmp_path):
    runs, curves, finals = synthetic()
    curve_table, summary, frame = aggregate.aggregate_runs(runs, curves, finals, PLOT)
    assert len(curve_table) == 4 * len(STEPS) and len(summary) == 4 and len(frame) == len(curve_table)
    # Sorted by the swept value, then format and step; the swept value is a column of both.
    order = ["V32-tf4-cot", "V32-tf4-standard", "V64-tf4-cot", "V64-tf4-standard"]
    assert curve_table["run_id"].drop_duplicates().tolist() == summary["run_id"].tolist() == order
    assert curve_table["step"].tolist()[:4] == STEPS
    for table in (curve_table, summary):  # tidy: no empty columns, no merge leftovers, the scale named
        assert not table.isna().all().any() and not [c for c in table if c.endswith(("_x", "_y"))]
        assert set(table["scale"]) == {"smoke"} and "vocab_size" in table
    assert "parent_prec" not in curve_table and "acc_final" not in curve_table and "step" not in summary
    lo, hi = wilson_interval(0.9 * 100, 100)
    first = curve_table.iloc[3]
    assert (first["answer_acc"], first["answer_acc_lo"], first["answer_acc_hi"]) == pytest.approx((0.9, lo, hi))

    path = tmp_path / "toy_summary.csv"
    aggregate.write_csv(summary, path)
    per_run = pd.read_csv(path).set_index("run_id")
    expected = {  # acc_final, acc_auc, trivial_baseline, lift, tau_25, tau_50
        "V32-tf4-cot": (0.6, 0.6, 0.2, 0.5, 20.0, 20.0),
        "V32-tf4-standard": (0.3, 0.3, 0.2, 0.125, 30.0, np.nan),
        "V64-tf4-cot": (0.2, 0.2, 0.3, -1 / 7, np.nan, np.nan),
        "V64-tf4-standard": (0.1, 0.1, 0.3, -2 / 7, np.nan, np.nan),
    }
    for run_id, values in expected.items():
        got = per_run.loc[run_id, ["acc_final", "acc_auc", "trivial_baseline", "lift", "tau_25", "tau_50"]]
        np.testing.assert_allclose(got.to_numpy(float), values, atol=1e-12)
    assert (per_run.loc["V32-tf4-cot", "acc_final_lo"], per_run.loc["V32-tf4-cot", "acc_final_hi"]) == pytest.approx(
        wilson_interval(60, 100))
    assert per_run.loc["V32-tf4-cot", "with_cot_answer_acc"] == pytest.approx(0.9)
    assert per_run.loc["V32-tf4-cot", "without_cot_answer_acc"] == pytest.approx(0.2)
    assert per_run.loc["V32-tf4-cot", "embed_sim_final"] == pytest.approx(0.45)
    assert per_run.loc["V64-tf4-cot", "embed_sim_chance"] == pytest.approx(4 / 64)
    assert per_run.loc["V64-tf4-cot", "parent_prec_chance"] == pytest.approx((2 / 4 + 2 / 5) / 2)
    assert math.isnan(per_run.loc["V64-tf4-standard", "parent_prec_chance"])
    assert per_run.loc["V32-tf4-cot", "n_train"] == 480 and per_run.loc["V32-tf4-cot", "n_dims"] == 4
    assert per_run.loc["V32-tf4-cot", "eval_every"] == 10 and per_run.loc["V32-tf4-cot", "steps"] == 30


def test_a_figure_with_two_seeds_draws_their_mean(tmp_path):
    runs, curves, finals = synthetic()
    again = runs.assign(run_id=runs["run_id"] + "-s43", seed=43)
    runs = pd.concat([runs, again], ignore_index=True)
    curves = pd.concat([curves, curves.assign(run_id=curves["run_id"] + "-s43", answer_acc=curves["answer_acc"] / 2)])
    finals = pd.concat([finals, finals.assign(run_id=finals["run_id"] + "-s43")])
    _, summary, frame = aggregate.aggregate_runs(runs, curves, finals, PLOT)
    assert len(summary) == 8 and set(summary["seed"]) == {42, 43}
    assert len(aggregate.draw(frame, PLOT, tmp_path / "seeds.png")) == 2


def test_plot_spec_naming_a_missing_column_is_a_config_error():
    runs, curves, finals = synthetic()
    with pytest.raises(ConfigError, match="plot.col"):
        aggregate.aggregate_runs(runs, curves, finals, {**PLOT, "col": "n_examples_typo"})


@pytest.mark.parametrize("plot", [
    PLOT, {**PLOT, "y": ["answer_acc", "embed_sim"], "refs": ["majority_baseline", "chance"]},
    {**PLOT, "hue": "format", "style": None}])
def test_draw_writes_non_empty_png_and_pdf(tmp_path, plot):
    runs, curves, finals = synthetic()
    *_, table = aggregate.aggregate_runs(runs, curves, finals, plot)
    written = aggregate.draw(table, plot, tmp_path / "figures" / "toy.png")
    assert sorted(p.rsplit(".", 1)[1] for p in written) == ["pdf", "png"]
    for path in written:
        with open(path, "rb") as handle:
            head = handle.read(8)
        assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")
        assert (tmp_path / "figures" / path.rsplit("/", 1)[1]).stat().st_size > 2000


def test_positions_figure_from_final_chain_accuracies(tmp_path):
    runs, curves, finals = synthetic()
    curves["chain_acc_1"] = curves["answer_acc"]
    finals["chain_acc_0"], finals["chain_acc_1"] = 0.8, 0.5
    *_, table = aggregate.aggregate_runs(runs, curves, finals, {"kind": "points", "x": "position"})
    from cotlab.figures.positions import final_positions
    positions = final_positions(table[table["format"] == "cot"])
    assert positions.loc[positions["run_id"] == "V32-tf4-cot", "chain_acc"].tolist() == [0.8, 0.5]
    plot = {"kind": "points", "x": "position", "y": "chain_acc", "hue": "model", "col": "vocab_size"}
    assert len(aggregate.draw(table, plot, tmp_path / "positions.png")) == 2


def small_quickstart(tmp_path):
    """A copy of config/ whose quickstart trains 256 sequences at smoke, so its splits are quick to make."""
    config = tmp_path / "config"
    shutil.copytree("config", config)
    card = yaml.safe_load((config / "experiments" / "quickstart.yaml").read_text())
    card["scales"]["smoke"]["base"]["train"].update(n_train=256, n_eval=64)
    (config / "experiments" / "quickstart.yaml").write_text(yaml.safe_dump(card))
    return config


def test_cli_aggregates_the_quickstart_from_result_files(tmp_path):
    config, results = small_quickstart(tmp_path), tmp_path / "results"
    jobs = workflow_jobs(["quickstart"], "smoke", config, str(results))
    plan = jobs.plan("quickstart")
    for run in plan["runs"]:  # the files train and evaluate leave, with made-up numbers
        files = run["files"]
        if not Path(files["train_data"]).exists():
            write_dataset(files["train_data"], DataConfig(**{**run["data"], "n_sequences": 256}), "train")
        Path(files["metrics"]).parent.mkdir(parents=True, exist_ok=True)
        acc = np.linspace(0.2, 0.9 if run["format"] == "cot" else 0.5, 4)
        pd.DataFrame({"step": STEPS, "answer_acc": acc, "majority_baseline": 0.25, "global_majority_baseline": 0.2,
                      "eval_loss": 1.0, "train_loss": 1.0, "n_eval": 64}).to_parquet(files["metrics"])
        Path(files["scores"]).parent.mkdir(exist_ok=True)
        pd.DataFrame([{"run_id": run["run_id"], "trained_format": run["format"], "format": "cot", "force": "",
                       "drop_k": 0, "with_cot": True, "cross_format": run["format"] != "cot", "n": 512.0,
                       "answer_acc": acc[-1]}]).to_parquet(files["scores"])
        pd.DataFrame([{"run_id": run["run_id"], "embed_sim": 0.5}]).to_parquet(files["analysis"])
        np.savez(files["attention"], maps=np.zeros((0, 3, 6)))
    args = argparse.Namespace(experiment="quickstart", scale="smoke", config_dir=str(config), results=str(results))
    assert aggregate.main(args) == 0
    layout = Layout("smoke", str(results))
    tables = {kind: pd.read_csv(path) for kind, path in layout.card_tables("quickstart", trains=True).items()}
    assert len(tables["curves"]) == len(plan["runs"]) * len(STEPS) and len(tables["summary"]) == len(plan["runs"])
    summary = tables["summary"]
    assert {"acc_final", "acc_final_lo", "acc_auc", "lift", "tau_25", "tau_50", "vocab_size",
            "with_cot_answer_acc", "trivial_baseline", "scale"} <= set(summary)
    assert summary["embed_sim_final"].eq(0.5).all() and summary["coverage"].between(0, 1).all()
    for suffix in ("png", "pdf"):
        assert Path(layout.figure("quickstart", suffix)).stat().st_size > 2000

    claims_args = argparse.Namespace(experiment="claims", scale="smoke", config_dir=str(config), results=str(results))
    assert aggregate.main(claims_args) == 0
    claims = pd.read_csv(layout.claims()).set_index("claim")
    assert claims.loc["cot_beats_std", "verdict"] == "held"
    assert claims.loc["cot_earlier", "verdict"] == "not run"
    # Claims read one scale's tables only: a scale that has none says so.
    other = argparse.Namespace(experiment="claims", scale="mini", config_dir=str(config), results=str(results))
    with pytest.raises(ConfigError, match=r"^scale='mini': has no card tables under .*results/mini/tables"):
        aggregate.main(other)
    # Swapping the format labels of the quickstart's tables turns its verdict around.
    swapped = {"cot": "standard", "standard": "cot"}
    for path in layout.card_tables("quickstart", trains=True).values():
        table = pd.read_csv(path)
        table.assign(format=table["format"].map(swapped)).to_csv(path, index=False)
    assert aggregate.main(claims_args) == 0
    assert pd.read_csv(layout.claims()).set_index("claim").loc["cot_beats_std", "verdict"] == "not held"


def test_cli_reports_a_missing_run_file(tmp_path):
    args = argparse.Namespace(experiment="quickstart", scale="smoke", config_dir="config",
                              results=str(tmp_path / "results"))
    with pytest.raises(ConfigError, match="metrics.parquet: not found"):
        aggregate.main(args)


def test_every_card_has_a_report_caption_that_renders():
    from pathlib import Path
    from types import SimpleNamespace

    import docutils.core
    import jinja2

    report = Path("workflow/report")
    note = "fresh H is not learned at this scale"
    for card in [*card_ids("config"), "claims"]:
        text = (report / f"{card}.rst").read_text()
        for params in (SimpleNamespace(note=""), SimpleNamespace(note=note)):
            snakemake = SimpleNamespace(config={"scale": "reduced"}, params=params)
            noted = jinja2.Environment().from_string(text).render(snakemake=snakemake)
            # a card's note at the scale is in its caption, and only when it has one
            assert (note in noted) == (card != "claims" and params.note == note), card
        rendered = jinja2.Environment().from_string(text).render(
            snakemake=SimpleNamespace(config={"scale": "reduced"}, params=SimpleNamespace(note="")))
        assert "reduced" in rendered  # the scale is named
        assert card == "claims" or "*Paper" in rendered  # and what the paper claims
        html = docutils.core.publish_parts(rendered, writer="html",
                                           settings_overrides={"report_level": 2, "halt_level": 2})["body"]
        assert "System Message" not in html and len(html) > 200


def test_cli_coverage_teaser_and_static_tables(tmp_path):
    results = tmp_path / "results"
    layout = Layout("smoke", str(results))
    for card in ("fig_token_coverage", "fig_teaser"):
        for point in points(card, "smoke", "config"):
            out = layout.data(point.data.data_id, "train", point.data.n_train)
            if not Path(out).exists():
                write_dataset(out, DataConfig(**point.data.split_config("train")), "train")
    # The coverage stage's reports (`cotlab coverage --n N` JSON files); one point reports n=100 only.
    coverage_points = points("fig_token_coverage", "smoke", "config")
    for i, point in enumerate(coverage_points):
        dataset = open_dataset(layout.data(point.data.data_id, "train", point.data.n_train))
        reports = Path(layout.coverage(point.data.data_id, point.data.n_train))
        reports.mkdir(parents=True)
        for n in [100] if i == 0 else coverage_sizes(dataset.n_rows):
            (reports / f"n{n}.json").write_text(json.dumps(coverage_report(dataset, n)))
    for card in ("fig_token_coverage", "fig_teaser", "tab_models", "tab_hparams"):
        args = argparse.Namespace(experiment=card, scale="smoke", config_dir="config", results=str(results))
        assert aggregate.main(args) == 0

    coverage = pd.read_csv(layout.table("fig_token_coverage"))
    last = coverage.iloc[-1]
    point = next(p for p in coverage_points if p.data.data_id == last["data_id"])
    report = coverage_report(open_dataset(layout.data(point.data.data_id, "train", point.data.n_train)), int(last["n"]))
    assert last["cov_chain"] == pytest.approx(report["cov_chain"]) and last["coverage"] == last["cov_chain"]
    assert coverage.groupby("data_id")["n"].nunique().max() > 1  # prefixes for the TC-vs-n panel
    assert coverage[coverage["data_id"] == coverage_points[0].data.data_id]["n"].tolist() == [100]
    teaser = pd.read_csv(layout.table("fig_teaser"))
    assert len(teaser) == 3 * (4 + 3) and set(teaser["role"]) == {"demo 1", "demo 2", "query"}
    assert teaser.loc[teaser["token"] == "y1", "parents"].nunique() == 1  # one DAG per sequence
    models = pd.read_csv(layout.table("tab_models"))
    assert set(models["model"]) == {"smoke-tf4", "smoke-tf8", "smoke-tf12"}
    hparams = pd.read_csv(layout.table("tab_hparams")).set_index("card")
    vocab = hparams.loc["fig_vocab"]
    assert vocab["steps"] == vocab["n_train"] // vocab["batch_size"]
    for card in ("fig_token_coverage", "fig_teaser"):
        assert Path(layout.figure(card)).stat().st_size > 2000
    assert not Path(layout.figure("tab_models")).exists()


def test_coverage_table_never_recomputes_a_missing_report(tmp_path):
    point = {"data_id": "x", "values": {}, "seed": 42, "data": {}, "files": {"coverage": str(tmp_path / "none")}}
    with pytest.raises(ConfigError, match="no n<N>.json reports"):
        aggregate.coverage_table([point])


def test_a_cards_note_at_a_scale_is_printed_under_its_figure(tmp_path, monkeypatch):
    """scales.<scale>.note reaches the figure: resolve_card carries it, the figure gets it as a text
    under the axes (and the figure grows to hold it); a scale without a note draws none."""
    from cotlab.cards import resolve_card
    from cotlab.figures import theme

    config = Path(__file__).resolve().parents[1] / "config"
    assert resolve_card("fig_vocab", "cpu", str(config))["note"].startswith("At the cpu scale")
    assert resolve_card("fig_vocab", "smoke", str(config))["note"] is None
    # a card of reused runs carries its sources' notes, each once: fig_attention reuses fig_diversity and fig_parents
    sources = [resolve_card(card, "cpu", str(config))["note"] for card in ("fig_diversity", "fig_parents")]
    assert all(sources) and resolve_card("fig_attention", "cpu", str(config))["note"] == " ".join(sources)
    assert resolve_card("fig_losses", "cpu", str(config))["note"] == resolve_card("fig_vocab", "cpu", str(config))["note"]
    figures = []
    real_save = theme.save
    monkeypatch.setattr(theme, "save", lambda fig, out, note=None: figures.append(fig) or real_save(fig, out, note))
    runs, curves, finals = synthetic()
    *_, table = aggregate.aggregate_runs(runs, curves, finals, PLOT)
    aggregate.draw(table, PLOT, tmp_path / "plain.png")
    aggregate.draw(table, {**PLOT, "note": "fresh H is not learned here"}, tmp_path / "noted.png")
    plain, noted = figures
    assert not any(t.get_text().startswith("Note:") for t in plain.texts)
    assert [t.get_text() for t in noted.texts if t.get_text().startswith("Note:")] == [
        "Note: fresh H is not learned here"]
    from PIL import Image
    assert Image.open(tmp_path / "noted.png").height > Image.open(tmp_path / "plain.png").height
