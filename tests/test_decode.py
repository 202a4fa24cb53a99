"""cotlab.decode: the KV-cache greedy decoder against repeated full forward passes, and sampling."""

import pytest
import torch

from cotlab.config import ConfigError
from cotlab.decode import KVCache, greedy_decode, prefill_and_decode
from cotlab.model import Transformer
from cotlab.model_config import model_config


@pytest.fixture(scope="module")
def model() -> Transformer:
    model = Transformer(model_config("smoke-tf12", 64))
    model.init_weights(3)
    return model


def left_padded(lengths: list[int], vocab_size: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for row, n in enumerate(lengths):
        ids[row, T - n:] = torch.randint(0, vocab_size, (n,), generator=generator)
        mask[row, T - n:] = True
    return ids, mask


def reference_decode(model, ids, mask, n):
    """No cache: rerun the whole sequence for every new token."""
    tokens, logits = [], []
    for _ in range(n):
        last = model(ids, mask)[:, -1]  # (B, V)
        tokens.append(last.argmax(-1))
        logits.append(last)
        ids = torch.cat([ids, tokens[-1][:, None]], dim=1)
        mask = None if mask is None else torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return torch.stack(tokens, 1), torch.stack(logits, 1)


@torch.no_grad()
def test_cached_decode_equals_full_forward_passes(model):
    ids, _ = left_padded([13, 13, 13, 13])
    tokens, logits = greedy_decode(model, ids, None, max_new_tokens=6)
    ref_tokens, ref_logits = reference_decode(model, ids, None, 6)
    assert tokens.dtype == torch.int64 and logits.dtype == torch.float32
    assert logits.shape == (4, 6, 64)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cached_decode_with_left_padding(model):
    ids, mask = left_padded([13, 5, 9, 1], seed=1)
    tokens, logits = greedy_decode(model, ids, mask, max_new_tokens=6)
    ref_tokens, ref_logits = reference_decode(model, ids, mask, 6)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    # each padded row decodes exactly as it would alone, unpadded
    for row, n in enumerate([13, 5, 9, 1]):
        alone_tokens, alone_logits = greedy_decode(model, ids[row:row + 1, -n:], max_new_tokens=6)
        assert torch.equal(alone_tokens[0], tokens[row])
        torch.testing.assert_close(alone_logits[0], logits[row], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_stop_id_rows_keep_emitting_it(model):
    ids, _ = left_padded([8, 8, 8], seed=2)
    free, _ = greedy_decode(model, ids, max_new_tokens=5)
    stop = int(free[0, 1])  # row 0 emits it at step 1
    tokens, _ = greedy_decode(model, ids, max_new_tokens=5, stop_id=stop)
    for row in range(3):
        hits = (free[row] == stop).nonzero()
        first = int(hits[0]) if len(hits) else 5
        assert torch.equal(tokens[row, :first + 1], free[row, :first + 1])
        assert torch.all(tokens[row, first:] == stop)


def test_early_stop_when_every_row_has_stopped(model):
    """A long budget ends once all rows emitted stop_id (after min_steps): same tokens, fewer steps."""
    ids, _ = left_padded([8, 8, 8], seed=3)  # this untrained model repeats one token: 21, 21, 14
    free, _ = greedy_decode(model, ids, max_new_tokens=40)
    stop = int(free[0, 0])
    assert (free[1] == stop).any() and not (free[2] == stop).any()
    never = prefill_and_decode(model, ids, None, 40, stop_id=stop, min_steps=2)  # row 2 never stops
    assert never.logits.size(1) == 40
    ids = ids[:2]
    full = prefill_and_decode(model, ids, None, 40, stop_id=stop)
    short = prefill_and_decode(model, ids, None, 40, stop_id=stop, min_steps=2)
    assert torch.equal(full.tokens, short.tokens) and short.tokens.shape == (2, 40)
    n = short.logits.size(1)
    stopped_at = int((full.tokens == stop).int().argmax(dim=1).max())  # last row's first stop
    assert n == 4 and stopped_at == 0  # the first look (STOP_CHECK = 4 steps) finds every row stopped
    assert torch.equal(short.logits, full.logits[:, :n])


@torch.no_grad()
def test_decode_under_bf16_autocast(model):
    ids, mask = left_padded([10, 6], seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, logits = greedy_decode(model, ids, mask, max_new_tokens=3)
    _, ref_logits = greedy_decode(model, ids, mask, max_new_tokens=1)
    assert tokens.shape == (2, 3) and logits.dtype == torch.float32
    assert (logits[:, 0] - ref_logits[:, 0]).abs().max() < 0.1


def test_bad_decode_inputs(model):
    ids, mask = left_padded([4, 2])
    with pytest.raises(ConfigError, match="^max_new_tokens=0"):
        greedy_decode(model, ids, mask, max_new_tokens=0)
    with pytest.raises(ConfigError, match="^prompt_mask=.*left-padded"):
        greedy_decode(model, ids, mask.flip(1), max_new_tokens=1)
    with pytest.raises(ConfigError, match="^prompt_ids="):
        greedy_decode(model, ids.int(), mask, max_new_tokens=1)
    with pytest.raises(ConfigError, match="^prompt_mask="):
        greedy_decode(model, ids, mask.long(), max_new_tokens=1)


def test_cache_refuses_overflow(model):
    cfg = model.cfg
    cache = KVCache(cfg.n_layer, 1, 4, cfg.n_kv_head, cfg.head_dim, torch.float32, "cpu")
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long), None, cache)
        with pytest.raises(ConfigError, match="^KVCache.max_len=4"):
            model(torch.zeros(1, 1, dtype=torch.long), None, cache)


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_prefill_in_chunks_equals_one_forward(model, padded):
    ids, mask = left_padded([12, 7] if padded else [12, 12], seed=4)
    cfg = model.cfg
    cache = KVCache(cfg.n_layer, 2, 12, cfg.n_kv_head, cfg.head_dim, torch.float32, "cpu")
    first = model(ids[:, :8], mask[:, :8] if padded else None, cache)  # (B, 8, V)
    rest = model(ids[:, 8:], None, cache)  # (B, 4, V): continues the cached rows
    whole = model(ids, mask if padded else None)  # (B, 12, V)
    torch.testing.assert_close(torch.cat([first, rest], 1)[mask], whole[mask], atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_a_teacher_forced_continuation_leaves_decoding_bit_identical(model, padded):
    """prefill_and_decode: the continuation's logits are those of prompt + continuation in one
    forward, and the cache is rewound so that the greedy tokens and logits are exactly greedy_decode's."""
    ids, mask = left_padded([11, 6, 9] if padded else [11, 11, 11], seed=5)
    mask = mask if padded else None
    continuation = torch.randint(0, 64, (3, 4), generator=torch.Generator().manual_seed(6))
    tokens, logits = greedy_decode(model, ids, mask, max_new_tokens=5, stop_id=7)
    decoded = prefill_and_decode(model, ids, mask, max_new_tokens=5, stop_id=7, continuation=continuation)
    assert torch.equal(decoded.tokens, tokens) and torch.equal(decoded.logits, logits)
    full_mask = None if mask is None else torch.cat([mask, torch.ones_like(continuation, dtype=torch.bool)], 1)
    whole = model(torch.cat([ids, continuation], 1), full_mask)  # (B, Tp + Tc, V)
    keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
    torch.testing.assert_close(decoded.prompt_logits[keep], whole[:, :11][keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decoded.continuation_logits, whole[:, 11:], atol=1e-5, rtol=1e-5)
    assert prefill_and_decode(model, ids, mask, 2).continuation_logits is None


def test_bad_continuation(model):
    ids, mask = left_padded([4, 2])
    with pytest.raises(ConfigError, match="^continuation="):
        prefill_and_decode(model, ids, mask, 2, continuation=torch.zeros(3, 1, dtype=torch.long))


@torch.no_grad()
def test_a_cold_temperature_samples_the_argmax(model):
    ids, mask = left_padded([9, 4, 7], seed=7)
    tokens, logits = greedy_decode(model, ids, mask, max_new_tokens=4)
    decoded = prefill_and_decode(model, ids, mask, 4, temperature=1e-6, n_samples=3,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(decoded.tokens, tokens.repeat_interleave(3, dim=0))  # row b·3 + s: sample s of prompt b
    torch.testing.assert_close(decoded.logits, logits.repeat_interleave(3, dim=0), atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_samples_share_their_prompts_prefill(model, padded):
    """n samples from one prefill (the cache's rows repeated) draw exactly what n copies of each prompt
    draw with the same generator, and the same seed draws the same samples again."""
    ids, mask = left_padded([10, 6] if padded else [10, 10], seed=8)
    mask = mask if padded else None

    def sample(prompts, prompt_mask, n, seed):
        return prefill_and_decode(model, prompts, prompt_mask, 6, temperature=1.0, n_samples=n,
                                  generator=torch.Generator().manual_seed(seed)).tokens

    shared = sample(ids, mask, 4, 0)
    copies = sample(ids.repeat_interleave(4, 0), None if mask is None else mask.repeat_interleave(4, 0), 1, 0)
    assert shared.shape == (8, 6) and torch.equal(shared, copies)
    assert torch.equal(sample(ids, mask, 4, 0), shared)
    assert not torch.equal(sample(ids, mask, 4, 1), shared)
    assert len({tuple(row) for row in shared.tolist()}) > 2  # the samples of a prompt differ


def test_bad_sampling_inputs(model):
    ids, mask = left_padded([4, 2])
    with pytest.raises(ConfigError, match="^temperature=-1.0: must be >= 0"):
        prefill_and_decode(model, ids, mask, 2, temperature=-1.0)
    with pytest.raises(ConfigError, match="^n_samples=0:"):
        prefill_and_decode(model, ids, mask, 2, temperature=1.0, n_samples=0)
    with pytest.raises(ConfigError, match="^n_samples=2: must be 1, or more with temperature > 0"):
        prefill_and_decode(model, ids, mask, 2, n_samples=2)



def test_a_compiled_deep_model_evaluates_like_eager_without_running_out_of_recompiles():
    """torch.compile(dynamic=True), as the in-training evaluation runs it, of a 12-layer model on the
    most varied shapes we evaluate (hybrid format, per-sequence K, left-padded prompts, continuations):
    compiled all the way (failing instead of falling back to eager at the recompile limit), and
    scoring what eager does. Layers must share their compiled code (the cache counts layers itself)."""
    import torch._dynamo

    from cotlab.config import DataConfig
    from cotlab.data.generate import generate_rows
    from cotlab.formats import PromptConfig
    from cotlab.metrics import evaluate_accuracy
    from cotlab.model_config import ModelConfig

    prompt_cfg = PromptConfig(format="hybrid_special_token", recipe={"alpha": 0.5})
    cfg = DataConfig(vocab_size=32, n_inputs=3, n_parents=2, chain_length=3, n_examples=[3, 4],
                     special_tokens=True, n_sequences=40)
    rows = generate_rows(cfg, "eval", 0, 40)
    model = Transformer(ModelConfig(n_layer=12, d_model=32, n_head=2, n_kv_head=1, d_ff=64,
                                    vocab_size=32 + prompt_cfg.offset))
    model.init_weights(3)
    eager = evaluate_accuracy(model, rows, cfg, prompt_cfg, batch_size=16, device="cpu")
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        compiled = evaluate_accuracy(torch.compile(model, dynamic=True), rows, cfg, prompt_cfg, batch_size=16,
                                     device="cpu")
    assert compiled == pytest.approx(eager, rel=1e-5, abs=0, nan_ok=True)
