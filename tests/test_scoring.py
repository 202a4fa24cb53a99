"""Paper 2's decoding and scoring (cotlab.metrics): both rules on hand-built generations, length
percentiles, budgets, majority vote, sampling, and the decoding options' errors."""

import numpy as np
import pytest
import torch

from cotlab.config import ConfigError, DataConfig, build
from cotlab.data.generate import generate_rows
from cotlab.formats import DecodeConfig, PromptConfig, max_new_tokens, min_new_tokens
from cotlab.metrics import majority_vote, parse_special, reduce_scores, score_rows
from cotlab.model import Transformer
from cotlab.model_config import ModelConfig, model_config
from cotlab.prompts_export import eval_prompts

CFG = DataConfig(vocab_size=32, n_inputs=3, n_parents=2, chain_length=3, n_examples=4, special_tokens=True,
                 fixed_h=True, fixed_dag=True, n_sequences=10)
SPECIAL = CFG.special_ids()
EOS, AS, AE, TE = SPECIAL["eos"], SPECIAL["answer_start"], SPECIAL["answer_end"], SPECIAL["think_end"]


class Scripted(torch.nn.Module):
    """A 'model' that emits a generation fixed per prompt (looked up by its real tokens), one token per
    decoding step; past the script's end it repeats its last token. Teacher-forced logits are zeros."""

    def __init__(self, vocab_size: int, scripts: dict[tuple[int, ...], list[int]]):
        super().__init__()
        self.cfg, self.scripts = model_config("smoke-tf4", vocab_size), scripts
        self.tok_embeddings = torch.nn.Embedding(vocab_size, 8)

    def forward(self, input_ids, attention_mask=None, cache=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        if cache is None:
            return logits
        if cache is not getattr(self, "cache", None):  # the prefill of a new batch
            mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask
            self.script = [self.scripts[tuple(row[m].tolist())] for row, m in zip(input_ids, mask)]
            self.cache, self.step = cache, 0
        elif T > 1:  # the teacher-forced target of the one-pass loss
            return logits
        S = B // len(self.script)  # samples per prompt: rows b·S .. b·S+S-1 are prompt b's
        for b in range(B):
            script = self.script[b // S]
            logits[b, -1, script[min(self.step, len(script) - 1)]] = 30.0
        self.step += 1
        return logits


# Forced think, C = 3: the target is y1 y2 ⟨te⟩ ⟨as⟩ y3 ⟨ae⟩ ⟨eos⟩ (7 tokens, today's budget C+4 = 7).
KINDS = {
    "right": lambda t: t,  # both rules right, length 7
    "no_as": lambda t: t[:3] + t[4:],  # y1 y2 ⟨te⟩ y3 ⟨ae⟩ ⟨eos⟩: training rule wrong, offline right, length 6
    "no_eos": lambda t: t[:-1] + [AE],  # ⟨ae⟩ forever: invalid under both, length = the budget
    "wrong_y": lambda t: t[:4] + [(t[4] + 1) % CFG.n_usable] + t[5:],  # well-formed, wrong answer, length 7
    "short": lambda t: [AE, EOS],  # fewer than 3 tokens: invalid under both, length 2
}


def scripted_setup(kinds: list[str]):
    """(model, rows, prompt config): row i of 10 is generated as KINDS[kinds[i % len(kinds)]]."""
    rows = generate_rows(CFG, "eval", 0, 10)
    prompt_cfg = PromptConfig(format="cot_special_token", force="think")
    batch = eval_prompts(rows, CFG, prompt_cfg, 10)
    scripts = {}
    for i, (prompt, mask, target) in enumerate(zip(batch.prompt_ids, batch.prompt_mask, batch.target)):
        t = [int(v) for v in target if v != -100]
        assert t[2:4] == [TE, AS] and t[5:] == [AE, EOS]
        scripts[tuple(prompt[mask].tolist())] = KINDS[kinds[i % len(kinds)]](t)
    assert len(scripts) == 10
    return Scripted(CFG.vocab_size, scripts), rows, prompt_cfg


def test_both_scoring_rules_on_hand_built_generations():
    model, rows, prompt_cfg = scripted_setup(list(KINDS))
    scores = score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu",
                        decode=DecodeConfig(max_new_tokens=12))
    kinds = [list(KINDS)[i % 5] for i in range(10)]
    assert scores.answer.tolist() == [k == "right" for k in kinds]
    assert scores.answer_offline.tolist() == [k in ("right", "no_as") for k in kinds]
    assert scores.valid[:, 0].tolist() == [k in ("right", "wrong_y") for k in kinds]
    assert scores.valid_offline[:, 0].tolist() == [k in ("right", "no_as", "wrong_y") for k in kinds]
    assert scores.gen_len[:, 0].tolist() == [{"right": 7, "no_as": 6, "no_eos": 12, "wrong_y": 7, "short": 2}[k]
                                            for k in kinds]
    metrics = reduce_scores(scores, CFG, prompt_cfg)
    assert metrics["answer_acc"] == 0.2 and metrics["answer_acc_offline"] == 0.4
    assert metrics["format_acc"] == 0.4 and metrics["format_acc_offline"] == 0.6
    # Lengths 2 2 6 6 7 7 7 7 12 12: the smallest length that 10%, 50%, 90% of them do not exceed.
    assert (metrics["length_p10"], metrics["length_p50"], metrics["length_p90"]) == (2.0, 7.0, 12.0)
    # Position by position against the target: y1 and y2 are wrong only in "short"; y3 (target
    # position 4) is right in "right" and "no_eos" only.
    assert (metrics["chain_acc_0"], metrics["chain_acc_1"], metrics["chain_acc_2"]) == (0.8, 0.8, 0.4)
    assert "gen_len_p50" not in metrics


def test_samples_of_a_sure_model_vote_its_one_answer():
    """Logits of 30 on one token: at temperature 0.5 every sample is the script (the others have
    probability < 1e-24), so the vote gives exactly the greedy scores, per sample and per row."""
    model, rows, prompt_cfg = scripted_setup(list(KINDS))
    greedy = score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu", decode=DecodeConfig(max_new_tokens=12))
    sampled = score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu",
                         decode=DecodeConfig(max_new_tokens=12, temperature=0.5, n_samples=3))
    for field in ("answer", "answer_offline", "chain"):
        assert np.array_equal(getattr(sampled, field), getattr(greedy, field)), field
    for field in ("valid", "valid_offline", "gen_len"):
        assert np.array_equal(getattr(sampled, field), np.repeat(getattr(greedy, field), 3, axis=1)), field
    assert reduce_scores(sampled, CFG, prompt_cfg) == reduce_scores(greedy, CFG, prompt_cfg)


def test_a_larger_budget_changes_nothing_when_eos_comes_in_time():
    model, rows, prompt_cfg = scripted_setup(["right", "no_as", "wrong_y", "short"])
    today = score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu")
    longer = score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu",
                        decode=DecodeConfig(max_new_tokens=30))
    assert (today.budget, longer.budget) == (7, 30)
    for field in ("answer", "answer_offline", "valid", "valid_offline", "gen_len", "chain", "present",
                  "chain_loss", "ce", "ce_tokens"):
        assert np.array_equal(getattr(today, field), getattr(longer, field)), field
    assert reduce_scores(today, CFG, prompt_cfg) == reduce_scores(longer, CFG, prompt_cfg)


def test_parse_special_under_both_rules_and_a_forced_answer_start():
    y = 5
    generations = torch.tensor([
        [AS, y, AE, EOS, EOS, EOS],  # ⟨as⟩ y ⟨ae⟩ ⟨eos⟩: valid under both
        [1, 2, y, AE, EOS, EOS],  # ⟨as⟩ missing: offline only
        [y, AE, EOS, EOS, EOS, EOS],  # 3 tokens: offline; training only when ⟨as⟩ was forced
        [AS, y, AE, 1, 2, 3],  # no ⟨eos⟩ within 6 tokens: invalid under both
        [AE, EOS, EOS, EOS, EOS, EOS],  # 2 tokens: invalid under both
    ])
    said, valid, offline, length = parse_special(generations, SPECIAL, answer_forced=False)
    assert valid.tolist() == [True, False, False, False, False]
    assert offline.tolist() == [True, True, True, False, False]
    assert said[:3].tolist() == [y, y, y] and length.tolist() == [4, 5, 3, 6, 2]
    _, valid, offline_forced, _ = parse_special(generations, SPECIAL, answer_forced=True)
    assert valid.tolist() == offline_forced.tolist() == offline.tolist()


def test_majority_vote_ties_to_the_smallest_id_and_skips_invalid_samples():
    answers = torch.tensor([[3, 3, 2, 9], [4, 2, 4, 2], [9, 1, 1, 1], [1, 1, 1, 1], [7, 7, 6, 6]])
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert majority_vote(answers, valid, 16).tolist() == [3, 2, 9, -1, 7]


def tiny_model(scale: float = 1.0) -> Transformer:
    model = Transformer(ModelConfig(n_layer=1, d_model=32, n_head=2, n_kv_head=1, d_ff=64, vocab_size=32))
    model.init_weights(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return model.eval()


def test_sampling_repeats_with_its_seed_and_a_cold_temperature_is_greedy():
    model, rows = tiny_model(), generate_rows(CFG, "eval", 0, 10)
    prompt_cfg = PromptConfig(format="cot_special_token", force="think")

    def run(**decode):
        return score_rows(model, rows, CFG, prompt_cfg, batch_size=4, device="cpu",
                          decode=DecodeConfig(max_new_tokens=12, **decode))

    first, again, other = (run(temperature=1.0, n_samples=4, seed=s) for s in (0, 0, 1))
    assert first.gen_len.shape == (10, 4)
    for field in ("answer", "answer_offline", "valid", "valid_offline", "gen_len", "chain", "chain_loss"):
        assert np.array_equal(getattr(first, field), getattr(again, field)), field
    assert not np.array_equal(first.gen_len, other.gen_len)
    greedy, cold = run(), run(temperature=1e-6, n_samples=3)  # every sample is the argmax
    assert np.array_equal(cold.gen_len, np.repeat(greedy.gen_len, 3, axis=1))
    assert np.array_equal(cold.valid, np.repeat(greedy.valid, 3, axis=1))
    for field in ("answer", "answer_offline", "chain"):
        assert np.array_equal(getattr(cold, field), getattr(greedy, field)), field
    np.testing.assert_allclose(cold.chain_loss, greedy.chain_loss, rtol=1e-5)  # B·S rows vs B: rounding
    # The format and length metrics count every sample, the answer every row.
    m = reduce_scores(first, CFG, prompt_cfg)
    assert m["format_acc"] == first.valid.mean() and m["answer_acc"] == first.answer.mean()


def test_the_shortest_well_formed_generation_per_format_and_force():
    special = {None: 4, "answer": 3, "think": 3 + 4}  # C = 3: y1 y2 ⟨te⟩ ⟨as⟩ y ⟨ae⟩ ⟨eos⟩
    for force, shortest in special.items():
        prompt_cfg = PromptConfig(format="cot_special_token", force=force)
        assert min_new_tokens(CFG, prompt_cfg) == shortest
        DecodeConfig(max_new_tokens=shortest).check(CFG, prompt_cfg)
        with pytest.raises(ConfigError, match=f"^max_new_tokens={shortest - 1}: must be >= {shortest}"):
            DecodeConfig(max_new_tokens=shortest - 1).check(CFG, prompt_cfg)
    plain = CFG.model_copy(update={"special_tokens": False})
    assert min_new_tokens(plain, PromptConfig(format="cot")) == 3
    assert min_new_tokens(plain, PromptConfig(format="standard")) == 1
    with pytest.raises(ConfigError, match="^max_new_tokens=2: must be >= 3"):
        DecodeConfig(max_new_tokens=2).check(plain, PromptConfig(format="cot"))
    # The budget: today's without max_new_tokens, else exactly it.
    think = PromptConfig(format="cot_special_token", force="think")
    assert (max_new_tokens(CFG, think), max_new_tokens(CFG, think, 100)) == (7, 100)
    mixed = CFG.model_copy(update={"chain_length": [2, 5]})  # the largest C sets the budget
    assert (max_new_tokens(mixed, think), min_new_tokens(mixed, think)) == (9, 9)


@pytest.mark.parametrize(("values", "message"), [
    ({"temperature": -0.5}, "^temperature=-0.5: must be a finite number >= 0"),
    ({"temperature": float("nan")}, "^temperature=nan: must be a finite number >= 0"),
    ({"n_samples": 0}, r"^n_samples=0: must be an integer in \[1, 1024\]"),
    ({"n_samples": 4}, r"^n_samples=4: needs temperature > 0"),
    ({"max_new_tokens": 0}, r"^max_new_tokens=0: must be null or an integer in \[1, 10000\]"),
    ({"seed": -1}, r"^seed=-1: must be an integer seed"),
    ({"n_samples": 2.0, "temperature": 1.0}, "^n_samples="),
])
def test_bad_decoding_options_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        build(DecodeConfig, values)


def test_score_rows_checks_the_budget_before_decoding():
    model, rows = tiny_model(), generate_rows(CFG, "eval", 0, 2)
    prompt_cfg = PromptConfig(format="standard_special_token", force="answer")
    with pytest.raises(ConfigError, match="^max_new_tokens=2: must be >= 3, the shortest well-formed generation "
                                          "of standard_special_token forced to answer"):
        score_rows(model, rows, CFG, prompt_cfg, batch_size=2, device="cpu", decode=DecodeConfig(max_new_tokens=2))
