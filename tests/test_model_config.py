"""cotlab.model_config: the named sizes, parameter counts (with and without torch) and config checks."""

import pytest
import torch

from cotlab.config import ConfigError, build
from cotlab.model import Transformer
from cotlab.model_config import MODEL_SIZES, ModelConfig, model_config


@pytest.mark.parametrize("vocab_size", [64, 1024])
@pytest.mark.parametrize("name", list(MODEL_SIZES))
def test_num_params_matches_experiments_formula(name, vocab_size):
    cfg = model_config(name, vocab_size)
    with torch.device("meta"):
        model = Transformer(cfg)
    L = MODEL_SIZES[name]["n_layer"]
    if name.startswith(("smoke", "cpu")):  # hidden 64: 2·64² + 2·64·32 + 3·64·256 + 2·64 per layer
        expected = 61_568 * L + 64 + 64 * vocab_size
    else:
        expected = 60_821_504 * L + 2_048 + 2_048 * vocab_size
    assert model.num_params() == cfg.num_params == expected  # the torch-free count agrees


def test_paper_sizes_table():
    # docs/models.md table, V = 1024
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
