"""`cotlab evaluate`: exact scores of a hand-set model whose outputs are known, with and without CoT."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cotlab.analysis.tables import wilson_interval
from cotlab.config import ConfigError, DataConfig
from cotlab.data.generate import Rows, generate_rows
from cotlab.formats import DecodeConfig, PromptConfig
from cotlab.evaluate import conditional_accuracy, evaluate_format, scored_formats, scored_points
from cotlab.metrics import evaluate_accuracy, reduce_scores, score_rows
from cotlab.model import Transformer
from cotlab.model_config import ModelConfig

V, N, C, K = 16, 2, 2, 3
CFG = DataConfig(vocab_size=V, n_inputs=N, n_parents=1, chain_length=C, n_examples=K, n_dims=4)


def successor_model() -> Transformer:
    """A 1-layer model that always emits (last token + 1) mod V, by construction.

    One-hot embeddings (D = 2V), attention output zeroed, and a SwiGLU whose unit j fires only on
    token j and writes a large e_{j+1}: the residual stream of token v is e_v + 31.9·e_{v+1}, and
    the tied output layer's argmax is v + 1.
    """
    cfg = ModelConfig(n_layer=1, d_model=2 * V, n_head=2, n_kv_head=1, d_ff=V, vocab_size=V)
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.tok_embeddings.weight.copy_(torch.eye(V, 2 * V))  # e_v
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
        mlp = model.layers[0].feed_forward
        mlp.w1.weight.copy_(torch.eye(V, 2 * V))  # unit j reads coordinate j
        mlp.w3.weight.copy_(torch.eye(V, 2 * V))
        successor = torch.zeros(2 * V, V)  # (D, F): unit j writes e_{(j+1) mod V}
        successor[(torch.arange(V) + 1) % V, torch.arange(V)] = 1.0
        mlp.w2.weight.copy_(successor)
    return model.eval()


def rows_from(queries: list[tuple[tuple[int, int], tuple[int, int]]]) -> Rows:
    """Rows whose query example (the last) has the given (inputs, chain); demos are fixed filler."""
    n = len(queries)
    inputs = np.tile(np.array([[1, 2], [3, 4], [0, 0]], np.int32), (n, 1, 1))  # (n, K, N)
    chain = np.tile(np.array([[5, 6], [7, 6], [0, 0]], np.int32), (n, 1, 1))  # (n, K, C): demo answers 6, 6
    for i, (x, y) in enumerate(queries):
        inputs[i, -1], chain[i, -1] = x, y
    dag = np.tile(np.array([[1], [2]], np.int32), (n, 1, 1))  # (n, C, M)
    return Rows(seq_idx=np.arange(n, dtype=np.int64), inputs=inputs, chain=chain, dag=dag)


# The successor model answers x_N + 1 without CoT and generates x_N + 1, x_N + 2 with CoT.
QUERIES = [
    ((3, 5), (6, 7)),  # cot: y1 right, y2 right; std (x_N + 1 = 6 vs y_C = 7): wrong
    ((3, 5), (6, 9)),  # cot: y1 right, y2 wrong; std wrong
    ((3, 5), (8, 7)),  # cot: y1 wrong, y2 right; std wrong
    ((1, 9), (3, 10)),  # cot: y1 wrong (10), y2 wrong (11); std right (10)
    ((4, 9), (10, 11)),  # cot: both right; std wrong
    ((2, 6), (7, 6)),  # cot: y1 right, y2 wrong (8); std wrong (7 vs 6); majority (6) right
]


def test_the_hand_set_model_emits_the_successor():
    model = successor_model()
    logits = model(torch.tensor([[3, 5, 15]]))
    assert logits.argmax(-1).tolist() == [[4, 6, 0]]


@pytest.mark.parametrize("fmt", ["cot", "standard"])
def test_exact_scores_with_and_without_cot(fmt):
    model, rows = successor_model(), rows_from(QUERIES)
    prompt_cfg = PromptConfig(format=fmt)
    out = evaluate_format(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu")
    n = len(QUERIES)
    assert out["n"] == n
    if fmt == "cot":
        assert out["answer_acc"] == pytest.approx(3 / n)  # rows 0, 2, 4
        assert out["chain_acc_0"] == pytest.approx(4 / n)  # rows 0, 1, 4, 5
        assert out["chain_acc_1"] == pytest.approx(3 / n)
        assert out["chain_cond_acc_0"] == pytest.approx(4 / n)
        assert out["chain_cond_acc_1"] == pytest.approx(2 / 4)  # of rows 0, 1, 4, 5: rows 0, 4
        assert out["chain_cond_n_1"] == 4
        lo, hi = wilson_interval(2, 4)
        assert (out["chain_cond_acc_1_lo"], out["chain_cond_acc_1_hi"]) == pytest.approx((lo, hi))
    else:
        assert out["answer_acc"] == pytest.approx(1 / n)  # row 3
        assert out["chain_acc_0"] == pytest.approx(1 / n)
        assert "chain_acc_1" not in out
    assert out["majority_baseline"] == pytest.approx(1 / n)  # demo answers are 6, 6: row 5
    lo, hi = wilson_interval(out["answer_acc"] * n, n)
    assert (out["answer_acc_lo"], out["answer_acc_hi"]) == pytest.approx((lo, hi))
    assert out["answer_acc_lo"] < out["answer_acc"] < out["answer_acc_hi"]


def test_conditional_accuracy_counts_only_rows_right_so_far():
    chain = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], bool)
    present = np.ones_like(chain)
    acc, count = conditional_accuracy(chain, present)
    assert count.tolist() == [4, 3, 2]
    np.testing.assert_allclose(acc, [3 / 4, 2 / 3, 1 / 2])
    # A row without column 0 (a standard-form hybrid query) is judged on the columns it has.
    present[2, 0] = False
    acc, count = conditional_accuracy(chain, present)
    assert count.tolist() == [3, 4, 3]


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


@pytest.mark.parametrize("fmt", ["cot", "standard", "cot_special_token", "standard_special_token"])
def test_per_row_scores_agree_with_the_training_metrics(fmt):
    special = fmt.endswith("special_token")
    cfg = DataConfig(vocab_size=32, n_inputs=3, n_parents=2, chain_length=3, n_examples=4,
                     special_tokens=special, fixed_h=True, fixed_dag=True, n_sequences=24)
    rows = generate_rows(cfg, "eval", 0, 24)
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, d_model=32, n_head=2, n_kv_head=1, d_ff=64, vocab_size=32))
    model.init_weights(3)
    prompt_cfg = PromptConfig(format=fmt, force={"cot_special_token": "think",
                                                 "standard_special_token": "answer"}.get(fmt))
    metrics = evaluate_accuracy(model, rows, cfg, prompt_cfg, batch_size=10, device="cpu")
    scores = score_rows(model, rows, cfg, prompt_cfg, batch_size=7, device="cpu")
    assert scores.answer.mean() == pytest.approx(metrics["answer_acc"])
    for i in range(scores.chain.shape[1]):
        assert scores.chain[:, i].mean() == pytest.approx(metrics[f"chain_acc_{i}"])


def test_scored_formats_pair_with_and_without_cot():
    plain = scored_formats("cot", CFG, {}, None)
    assert [(p.format, cross) for p, cross in plain] == [("cot", False), ("standard", True)]
    special_cfg = CFG.model_copy(update={"special_tokens": True, "vocab_size": 32})
    hybrid = scored_formats("hybrid_special_token", special_cfg, {}, None)
    assert [(p.format, p.force, cross) for p, cross in hybrid] == [
        ("cot_special_token", "think", False), ("standard_special_token", "answer", False)]
    with pytest.raises(ConfigError, match="force"):
        scored_formats("cot", CFG, {"force": "think"}, None)


def test_scored_points_cross_the_grid_for_every_format():
    special_cfg = CFG.model_copy(update={"special_tokens": True, "vocab_size": 32})
    grid = {"force": [None, "think"], "temperature": [0.0, 0.5]}
    plan = scored_points("cot_special_token", special_cfg, {}, None, grid, seed=4)
    assert [(p.format, p.force, d.temperature, cross) for p, d, cross in plan] == [
        (fmt, force, t, fmt != "cot_special_token") for force in (None, "think") for t in (0.0, 0.5)
        for fmt in ("cot_special_token", "standard_special_token")]
    assert {d.seed for _, d, _ in plan} == {4} and scored_points("cot", CFG, {}, None, {}, 0) == [
        (p, DecodeConfig(), cross) for p, cross in scored_formats("cot", CFG, {}, None)]  # no grid: one point


def test_cli_scores_a_run_directory_and_writes_the_analyses(tmp_path):
    """`cotlab evaluate` on a real dataset and a saved successor model: expected accuracies from the rows."""
    from cotlab.checkpoint import save_hf
    from cotlab.cli import main as cli
    from cotlab.data.store import open_dataset, write_dataset

    data_cfg = CFG.model_copy(update={"n_sequences": 40, "n_parents": 2})
    write_dataset(tmp_path / "eval", data_cfg, "eval")
    run_dir = tmp_path / "run"
    save_hf(successor_model(), run_dir / "final")
    (run_dir / "config.json").write_text(json.dumps({"train": {"prompt": {"format": "cot"}}, "precision": "fp32"}))
    out = tmp_path / "eval-out" / "run.parquet"
    data_id = open_dataset(tmp_path / "eval").manifest["data_id"]
    assert cli(["evaluate", str(run_dir), "--eval-data", str(tmp_path / "eval"), "--out", str(out),
                "--n", "30", "--batch-size", "8", "--device", "cpu", "--n-attn", "5", "--data-id", data_id]) == 0

    rows = open_dataset(tmp_path / "eval").read(0, 30)
    x_last, y = rows.inputs[:, -1, -1].astype(int), rows.chain[:, -1].astype(int)  # (n,), (n, C)
    table = pd.read_parquet(out).set_index("format")
    cot, std = table.loc["cot"], table.loc["standard"]
    assert not cot["cross_format"] and std["cross_format"] and cot["with_cot"] and not std["with_cot"]
    assert cot["n"] == std["n"] == 30
    assert cot["answer_acc"] == pytest.approx(np.mean((x_last + 2) % V == y[:, 1]))
    assert cot["chain_acc_0"] == pytest.approx(np.mean((x_last + 1) % V == y[:, 0]))
    first_right = (x_last + 1) % V == y[:, 0]
    if first_right.any():
        assert cot["chain_cond_acc_1"] == pytest.approx(np.mean(((x_last + 2) % V == y[:, 1])[first_right]))
    assert std["answer_acc"] == pytest.approx(np.mean((x_last + 1) % V == y[:, 1]))

    analysis = pd.read_parquet(tmp_path / "eval-out" / "run.analysis.parquet").iloc[0]
    assert 0.0 <= analysis["embed_sim"] <= 1.0 and analysis["n_attn"] == 5
    assert analysis["embed_sim_chance"] == pytest.approx(CFG.n_dims / V)
    assert 0.0 <= analysis["parent_prec"] <= 1.0
    with np.load(tmp_path / "eval-out" / "run.attention.npz") as arrays:
        assert arrays["maps"].shape == (5, C, N + C - 1)
        assert arrays["adjacency"].sum() == C * 2
    assert not list((tmp_path / "eval-out").glob(".*"))  # no temp files left behind


def test_cli_rejects_bad_options_before_any_work(tmp_path, capsys):
    from cotlab.cli import main as cli

    assert cli(["evaluate", str(tmp_path), "--eval-data", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "out=" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path), "--eval-data", str(tmp_path), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "config.json not found" in capsys.readouterr().err


@pytest.fixture
def run_and_splits(tmp_path):
    """A run directory (saved successor model) and a train and an eval split of its data point."""
    from cotlab.checkpoint import save_hf
    from cotlab.data.store import write_dataset

    data_cfg = CFG.model_copy(update={"n_sequences": 20, "n_parents": 2})
    for split in ("train", "eval"):
        write_dataset(tmp_path / split, data_cfg, split)
    run_dir = tmp_path / "run"
    save_hf(successor_model(), run_dir / "final")
    (run_dir / "config.json").write_text(json.dumps({"train": {"prompt": {"format": "cot"}}, "precision": "fp32"}))
    return run_dir, tmp_path


def evaluate_cli(run_dir, eval_data, *extra) -> int:
    from cotlab.cli import main as cli

    return cli(["evaluate", str(run_dir), "--eval-data", str(eval_data), "--out", str(run_dir / "e.parquet"),
                "--device", "cpu", "--n-attn", "2", *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cotlab evaluate: error: "), err
    return err


def test_cli_refuses_a_train_split(run_and_splits, capsys):
    run_dir, data = run_and_splits
    assert evaluate_cli(run_dir, data / "train") == 2
    assert "eval-data=" in one_error_line(capsys) and not (run_dir / "e.parquet").exists()


def test_cli_refuses_another_data_id(run_and_splits, capsys):
    from cotlab.data.store import open_dataset

    run_dir, data = run_and_splits
    actual = open_dataset(data / "eval").manifest["data_id"]
    assert evaluate_cli(run_dir, data / "eval", "--data-id", "V16-other__00000000") == 2
    err = one_error_line(capsys)
    assert actual in err and "V16-other__00000000" in err
    assert evaluate_cli(run_dir, data / "eval", "--data-id", actual) == 0


@pytest.mark.parametrize("text", ['{"train": {"prompt": ', "[]", '{"train": {"prompt": {}}}'])
def test_cli_names_an_unreadable_run_config(run_and_splits, capsys, text):
    run_dir, data = run_and_splits
    (run_dir / "config.json").write_text(text)
    assert evaluate_cli(run_dir, data / "eval") == 2
    assert f"{run_dir / 'config.json'}:" in one_error_line(capsys)


# One-pass evaluation (metrics.score_rows, "One pass"): a data point with demonstrations and a chain.
ONE_PASS_CASES = {
    "cot": {"format": "cot"},
    "standard": {"format": "standard", "offset": 2},
    "cot_special_token": {"format": "cot_special_token", "force": "think"},
    "standard_special_token": {"format": "standard_special_token", "force": "answer"},
    "hybrid": {"format": "hybrid_special_token", "recipe": {"alpha": 1.0}},  # left-padded, unforced
    "drop_k": {"format": "cot_special_token", "force": "think", "drop_k": 2},  # not prompt + target: two passes
}


def one_pass_setup(name: str, scale: float = 1.0):
    """(model, rows, data config, prompt config) of a ONE_PASS_CASES case; `scale` sharpens the logits."""
    prompt_cfg = PromptConfig(**ONE_PASS_CASES[name])
    cfg = DataConfig(vocab_size=32, n_inputs=3, n_parents=2, chain_length=3, n_examples=4,
                     special_tokens=prompt_cfg.special, fixed_h=True, fixed_dag=True, n_sequences=24)
    model = Transformer(ModelConfig(n_layer=2, d_model=32, n_head=2, n_kv_head=1, d_ff=64,
                                    vocab_size=32 + prompt_cfg.offset))
    model.init_weights(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return model.eval(), generate_rows(cfg, "eval", 0, 24), cfg, prompt_cfg


def reference_ce(model, rows, cfg, prompt_cfg):
    """eval_loss terms by definition: a teacher-forced forward of each row's training rendering, alone
    (so no padding, and nothing another row of a batch could change)."""
    from cotlab.data.prompts import IGNORE, render_train

    ce, count = [], []
    for start in range(len(rows.seq_idx)):
        seq = render_train(rows.take(slice(start, start + 1)), cfg, prompt_cfg, len(rows.seq_idx))
        labels = torch.from_numpy(seq.labels[:, 1:])
        out = model(torch.from_numpy(seq.input_ids))[:, :-1]
        loss = torch.nn.functional.cross_entropy(out.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        ce.append(loss.double().sum(dim=1).numpy())
        count.append((labels != IGNORE).sum(dim=1).numpy())
    return np.concatenate(ce), np.concatenate(count)


@pytest.mark.parametrize("scale", [1.0, 20.0])
@pytest.mark.parametrize("name", list(ONE_PASS_CASES))
def test_one_pass_scores_equal_the_two_pass_definition(name, scale):
    """Every per-row score of the one-pass evaluation is exactly the two-pass one (decoding, then a
    separate forward of the training rendering), and its eval_loss terms match each row's own
    forward, alone, to 1e-6 relative: the batch a row is scored in does not change its loss."""
    model, rows, cfg, prompt_cfg = one_pass_setup(name, scale)
    with torch.no_grad():
        new = score_rows(model, rows, cfg, prompt_cfg, batch_size=7, device="cpu")
        old = score_rows(model, rows, cfg, prompt_cfg, batch_size=7, device="cpu", one_pass=False)
        ce, count = reference_ce(model, rows, cfg, prompt_cfg)
    for field in ("answer", "valid", "gen_len", "chain", "present", "chain_loss", "ce_tokens", "majority"):
        assert np.array_equal(getattr(new, field), getattr(old, field)), field  # chain_loss: bit for bit
    np.testing.assert_array_equal(new.ce_tokens, count)
    np.testing.assert_allclose(new.ce, ce, rtol=1e-6, atol=0)
    np.testing.assert_allclose(old.ce, ce, rtol=1e-6, atol=0)
    new_metrics, old_metrics = reduce_scores(new, cfg, prompt_cfg), reduce_scores(old, cfg, prompt_cfg)
    assert new_metrics["eval_loss"] == pytest.approx(ce.sum() / count.sum(), rel=1e-6)
    assert {k: v for k, v in new_metrics.items() if k != "eval_loss"} == pytest.approx(
        {k: v for k, v in old_metrics.items() if k != "eval_loss"}, nan_ok=True, rel=0, abs=0)


def forward_positions(model, rows, cfg, prompt_cfg, one_pass: bool) -> float:
    """Positions the model is run on per evaluated row (B·T summed over forward calls, / n)."""
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].numel()))
    try:
        score_rows(model, rows, cfg, prompt_cfg, batch_size=8, device="cpu", one_pass=one_pass)
    finally:
        hook.remove()
    return sum(seen) / len(rows.seq_idx)


# Positions per row, two passes -> one pass, for V=32, N=3, C=3, K=4 (Tp prompt, Tt target, T = Tp + Tt,
# n_new budget): two passes = Tp + (n_new - 1) + T, one pass = Tp + (Tt - 1) + (n_new - 1).
FORWARD_POSITIONS = {
    "cot": (47, 25),  # Tp 21, Tt 3, n_new 3
    "standard": (31, 15),  # Tp 15, Tt 1, n_new 1
    "cot_special_token": (105, 58),  # Tp 46, Tt 7, n_new 7
    "standard_special_token": (77, 42),  # Tp 34, Tt 3, n_new 7
    "drop_k": (97, 97),  # Tp 38: the prompt is not the training rendering's prefix, so two passes
}


@pytest.mark.parametrize("name", list(FORWARD_POSITIONS))
def test_one_pass_runs_each_prompt_token_through_the_model_once(name):
    model, rows, cfg, prompt_cfg = one_pass_setup(name)
    old = forward_positions(model, rows, cfg, prompt_cfg, one_pass=False)
    new = forward_positions(model, rows, cfg, prompt_cfg, one_pass=True)
    assert (old, new) == FORWARD_POSITIONS[name]
    if name != "drop_k":
        assert new <= 0.6 * old  # cot: 25 / 47 = 0.53


# Paper 2's probes: `--grid`, `--seed` and `--ood` on a run trained in a special-token format.
SPECIAL_CFG = CFG.model_copy(update={"special_tokens": True, "n_parents": 2, "n_sequences": 12})


@pytest.fixture
def special_run(tmp_path):
    """A cot_special_token run directory (saved successor model, its eval data point in config.json)
    and the eval split of that data point."""
    from cotlab.checkpoint import save_hf
    from cotlab.data.store import open_dataset, write_dataset

    write_dataset(tmp_path / "eval", SPECIAL_CFG, "eval")
    run_dir = tmp_path / "run"
    save_hf(successor_model(), run_dir / "final")
    eval_data = open_dataset(tmp_path / "eval").config.to_dict()  # as `cotlab train` records it
    (run_dir / "config.json").write_text(json.dumps({"train": {"prompt": {"format": "cot_special_token"}},
                                                     "precision": "fp32", "eval_data": eval_data}))
    return run_dir, tmp_path / "eval"


def test_grid_scores_every_point_of_the_product(special_run):
    from cotlab.data.store import open_dataset

    run_dir, eval_data = special_run
    assert evaluate_cli(run_dir, eval_data, "--formats", "cot_special_token", "--grid", "force=none,think",
                        "--grid", "max_new_tokens=none,12") == 0
    table = pd.read_parquet(run_dir / "e.parquet")
    # C = 2: the free budget is C+5 = 7, forced to think C+4 = 6; the grid's order, the last key fastest.
    assert list(zip(table["force"], table["max_new_tokens"])) == [("", 7), ("", 12), ("think", 6), ("think", 12)]
    assert (table["temperature"] == 0.0).all() and (table["n_samples"] == 1).all() and (table["drop_k"] == 0).all()
    assert (table["drop_strategy"] == "first_k").all() and (table["format"] == "cot_special_token").all()
    rows = open_dataset(eval_data).read(0, 12)
    for _, row in table.iterrows():
        prompt_cfg = PromptConfig(format="cot_special_token", force=row["force"] or None)
        budget = None if row["max_new_tokens"] in (6, 7) else 12
        expected = evaluate_format(successor_model(), rows, SPECIAL_CFG, prompt_cfg, batch_size=64, device="cpu",
                                   decode=DecodeConfig(max_new_tokens=budget))
        for name in ("answer_acc", "answer_acc_offline", "format_acc", "format_acc_offline", "length_p10",
                     "length_p50", "length_p90", "eval_loss", "chain_acc_0", "answer_acc_offline_hi",
                     "format_acc_offline_lo"):
            assert row[name] == pytest.approx(expected[name], nan_ok=True), name


def test_grid_samples_with_the_seed(special_run):
    run_dir, eval_data = special_run
    out = []
    for seed in ("3", "3"):
        assert evaluate_cli(run_dir, eval_data, "--grid", "temperature=0.5", "--grid", "n_samples=2",
                            "--seed", seed) == 0
        out.append(pd.read_parquet(run_dir / "e.parquet"))
    assert out[0]["format"].tolist() == ["cot_special_token", "standard_special_token"]  # the defaults, forced
    assert out[0]["force"].tolist() == ["think", "answer"]
    assert (out[0]["temperature"] == 0.5).all() and (out[0]["n_samples"] == 2).all()
    pd.testing.assert_frame_equal(out[0], out[1])


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "drop_k=0,3"], "error: drop_k=3: must be <= n_examples-1=2"),  # K = 3
    (["--grid", "beam=2"], "grid='beam=2': must look like KEY=V1,V2,... with KEY one of drop_k"),
    (["--grid", "force=think", "--grid", "force=answer"], "gives force a second time"),
    (["--grid", "temperature="], "needs comma-separated values, each once"),
    (["--grid", "drop_k=1,1"], "needs comma-separated values, each once"),
    (["--grid", "drop_k=1", "--set", "drop_k=0"], "grid='drop_k': is also given by --set"),
    (["--grid", "n_samples=4"], "n_samples=4: needs temperature > 0"),
    (["--grid", "temperature=-1"], "temperature=-1.0: must be a finite number >= 0"),
    (["--grid", "max_new_tokens=5", "--formats", "cot_special_token"],
     "max_new_tokens=5: must be >= 6, the shortest well-formed generation of cot_special_token forced to think"),
    (["--grid", "max_new_tokens=1.5"], "max_new_tokens="),
    (["--seed", "-1", "--grid", "temperature=1"], "seed=-1: must be an integer seed"),
])
def test_bad_grid_points_fail_before_any_work(special_run, capsys, args, message):
    run_dir, eval_data = special_run
    assert evaluate_cli(run_dir, eval_data, *args) == 2
    assert message in one_error_line(capsys)
    assert not (run_dir / "e.parquet").exists()


def test_ood_accepts_other_shapes_only(special_run, capsys):
    from cotlab.data.store import write_dataset

    run_dir, eval_data = special_run
    shapes, other = eval_data.parent / "k5", eval_data.parent / "seed7"
    write_dataset(shapes, SPECIAL_CFG.model_copy(update={"n_examples": 5, "chain_length": 3}), "eval")
    write_dataset(other, SPECIAL_CFG.model_copy(update={"seed": 7}), "eval")
    assert evaluate_cli(run_dir, shapes, "--formats", "cot_special_token") == 2  # without --ood: today's check
    assert "is another data point than the run's eval split" in one_error_line(capsys)
    assert evaluate_cli(run_dir, shapes, "--ood", "--formats", "cot_special_token", "--grid", "drop_k=0,4") == 0
    table = pd.read_parquet(run_dir / "e.parquet")
    assert table["drop_k"].tolist() == [0, 4] and table["max_new_tokens"].tolist() == [7, 7]  # C = 3 there
    assert "chain_acc_2" in table and table["n"].tolist() == [12, 12]
    assert evaluate_cli(run_dir, other, "--ood") == 2
    err = one_error_line(capsys)
    assert "may differ from the run's eval split only in n_inputs" in err and "'seed': 42" in err
