"""cotlab.model: initialisation, shapes, padding, precision, attention maps."""

import torch

from cotlab.model import Transformer
from cotlab.model_config import model_config


def smoke_model(name: str = "smoke-tf8", vocab_size: int = 64, seed: int = 0) -> Transformer:
    model = Transformer(model_config(name, vocab_size))
    model.init_weights(seed)
    return model


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
