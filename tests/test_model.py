"""cotlab.model: sizes and parameter counts, config checks, padding, precision, attention maps."""

import pytest
import torch

from cotlab.config import ConfigError, build
from cotlab.model import Transformer
from cotlab.model_config import MODEL_SIZES, ModelConfig, model_config


def smoke_model(name: str = "smoke-tf8", vocab_size: int = 64, seed: int = 0) -> Transformer:
    model = Transformer(model_config(name, vocab_size))
    model.init_weights(seed)
    return model


@pytest.mark.parametrize("vocab_size", [64, 1024])
@pytest.mark.parametrize("name", list(MODEL_SIZES))
def test_num_params_matches_experiments_formula(name, vocab_size):
    with torch.device("meta"):
        model = Transformer(model_config(name, vocab_size))
    L = MODEL_SIZES[name]["n_layer"]
    if name.startswith("smoke"):
        expected = 61_568 * L + 64 + 64 * vocab_size
    else:
        expected = 60_821_504 * L + 2_048 + 2_048 * vocab_size
    assert model.num_params() == expected


def test_paper_sizes_table():
    # experiments.md §1 table, V = 1024
    counts = {}
    for name in ("tf4", "tf8", "tf12"):
        with torch.device("meta"):
            counts[name] = Transformer(model_config(name, 1024)).num_params()
    assert counts == {"tf4": 245_385_216, "tf8": 488_671_232, "tf12": 731_957_248}
    cfg = model_config("tf4", 1024)
    assert (cfg.d_model, cfg.n_head, cfg.head_dim, cfg.n_kv_head, cfg.d_ff) == (2048, 32, 64, 8, 8192)
    assert (cfg.rope_theta, cfg.norm_eps, cfg.max_seq_len) == (5e5, 1e-6, 131_072)


@pytest.mark.parametrize("overrides, field", [
    ({"d_model": 66}, "d_model"),  # not divisible by n_head=4
    ({"d_model": 4}, "d_model"),  # head dim 1 is odd (RoPE rotates pairs)
    ({"n_kv_head": 3}, "n_head"),  # 4 heads do not split into 3 groups
    ({"n_layer": 0}, "n_layer"),
    ({"n_kv_head": 0}, "n_kv_head"),
    ({"d_ff": -1}, "d_ff"),
    ({"max_seq_len": 0}, "max_seq_len"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"rope_theta": float("nan")}, "rope_theta"),
    ({"init_std": -0.02}, "init_std"),
    ({"n_layer": "2"}, "n_layer"),
    ({"dropout": 0.1}, "dropout"),
])
def test_bad_model_config_is_one_line_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as exc:
        model_config("smoke-tf8", 64, **overrides)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(field)


def test_bad_vocab_and_unknown_size():
    with pytest.raises(ConfigError, match=r"^vocab_size=0"):
        model_config("smoke-tf8", 0)
    with pytest.raises(ConfigError, match=r"^model='tf16': must be one of tf4, tf8, tf12, smoke-tf4"):
        model_config("tf16", 64)
    with pytest.raises(ConfigError):
        build(ModelConfig, dict(n_layer=1, d_model=64, n_head=4, n_kv_head=2, d_ff=256))  # no vocab_size


def test_init_weights_table_and_determinism():
    a, b = smoke_model(seed=7), smoke_model(seed=7)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
        if name.endswith("norm.weight"):
            assert torch.equal(p, torch.ones_like(p))
        else:
            assert abs(p.std().item() - 0.02) < 0.004, name
    assert not torch.equal(smoke_model(seed=8).tok_embeddings.weight, a.tok_embeddings.weight)


def test_forward_shapes_and_fp32_logits_under_autocast():
    model = smoke_model()
    ids = torch.randint(0, 64, (2, 9))
    assert model(ids).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
    assert logits.shape == (2, 9, 64) and logits.dtype == torch.float32
    assert (logits - model(ids)).abs().max() < 0.1  # bf16 rounding only


def test_left_padding_gives_the_unpadded_logits():
    model = smoke_model("smoke-tf12")
    torch.manual_seed(0)
    prompts = [torch.randint(0, 64, (n,)) for n in (11, 7, 4)]
    T = max(len(p) for p in prompts)
    ids = torch.full((3, T), 63)  # any id under padding: it must not matter
    mask = torch.zeros(3, T, dtype=torch.bool)
    for row, p in enumerate(prompts):
        ids[row, T - len(p):], mask[row, T - len(p):] = p, True
    padded = model(ids, mask)  # (3, T, V)
    for row, p in enumerate(prompts):
        alone = model(p[None])[0]  # (len, V)
        torch.testing.assert_close(padded[row, T - len(p):], alone, atol=1e-5, rtol=1e-5)
    ids[1, :2], ids[2, :5] = 5, 17  # different pad ids, same logits at real tokens
    torch.testing.assert_close(model(ids, mask)[mask], padded[mask], atol=0, rtol=0)


def test_all_true_mask_equals_no_mask():
    model = smoke_model()
    ids = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(model(ids, torch.ones(2, 12, dtype=torch.bool)), model(ids),
                               atol=1e-5, rtol=1e-5)


def test_last_layer_attention_is_causal_and_normalized():
    model = smoke_model()
    ids = torch.randint(0, 64, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :3] = False
    attn = model.last_layer_attention(ids, mask)  # (B, T, T)
    assert attn.shape == (2, 10, 10) and attn.dtype == torch.float32
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 10))
    assert torch.all(attn.triu(diagonal=1) == 0)
    assert torch.all(attn[1, 3:, :3] == 0)  # real queries never look at padding
    torch.testing.assert_close(attn[1, 3:, 3:], model.last_layer_attention(ids[1:, 3:])[0])
