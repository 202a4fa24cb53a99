"""cotlab.checkpoint: HF Llama directories that transformers loads, and exact round trips."""

import json

import pytest
import torch

from cotlab.checkpoint import (CheckpointError, hf_to_state_dict, load_hf, save_hf,
                               state_dict_to_hf)
from cotlab.decode import greedy_decode
from cotlab.model import Transformer
from cotlab.model_config import model_config

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = Transformer(model_config("smoke-tf8", 64))
    model.init_weights(11)
    directory = save_hf(model, tmp_path_factory.mktemp("ckpt") / "final")
    hf = transformers.LlamaForCausalLM.from_pretrained(directory, attn_implementation="eager",
                                                       dtype=torch.float32)
    return model, directory, hf.eval()


def inputs(B=3, T=14, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (B, T), generator=generator)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, :5], mask[-1, :T - 1] = False, False
    return ids, mask


def test_directory_layout_and_config(saved):
    model, directory, _ = saved
    assert sorted(p.name for p in directory.parent.iterdir()) == ["final"]  # no temp dirs left
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True and config["torch_dtype"] == "float32"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"],
            config["head_dim"], config["vocab_size"]) == (64, 2, 2, 16, 64)


@torch.no_grad()
def test_transformers_logits_equal_ours(saved):
    model, _, hf = saved
    ids, mask = inputs()
    torch.testing.assert_close(hf(input_ids=ids).logits, model(ids), atol=1e-4, rtol=0)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # HF takes left-padding positions explicitly
    theirs = hf(input_ids=ids, attention_mask=mask.long(), position_ids=positions).logits
    torch.testing.assert_close(theirs[mask], model(ids, mask)[mask], atol=1e-4, rtol=0)


@torch.no_grad()
def test_last_layer_attention_equals_transformers_eager(saved):
    model, _, hf = saved
    ids, _ = inputs(B=2, T=10, seed=1)
    theirs = hf(input_ids=ids, output_attentions=True).attentions[-1].mean(dim=1)  # (B, T, T)
    torch.testing.assert_close(model.last_layer_attention(ids), theirs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_greedy_decode_equals_transformers_generate(saved):
    model, _, hf = saved
    ids, _ = inputs(B=4, T=12, seed=2)
    ours, _ = greedy_decode(model, ids, max_new_tokens=4)
    theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=4, use_cache=True)
    assert torch.equal(ours, theirs[:, 12:])


def test_load_hf_round_trips_exactly(saved, tmp_path):
    model, directory, hf = saved
    loaded = load_hf(directory)
    assert loaded.cfg == model.cfg
    for (name, ours), theirs in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(ours, theirs), name
    # a directory written by transformers itself loads too
    hf.save_pretrained(tmp_path / "hf")
    for name, tensor in load_hf(tmp_path / "hf").state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_name_mapping_matches_transformers(saved):
    model, _, hf = saved
    hf_names = set(state_dict_to_hf(model.state_dict()))
    assert hf_names == set(hf.state_dict()) - {"lm_head.weight"}
    assert "model.layers.1.mlp.gate_proj.weight" in hf_names
    back = hf_to_state_dict(state_dict_to_hf(model.state_dict()))
    assert list(back) == list(model.state_dict())


def test_save_replaces_an_existing_directory(saved, tmp_path):
    model, _, _ = saved
    other = Transformer(model.cfg)
    other.init_weights(12)
    save_hf(model, tmp_path / "step")
    save_hf(other, tmp_path / "step")
    assert [p.name for p in tmp_path.iterdir()] == ["step"]
    assert torch.equal(load_hf(tmp_path / "step").tok_embeddings.weight, other.tok_embeddings.weight)


def test_bad_checkpoints_name_the_file(saved, tmp_path):
    _, directory, _ = saved
    with pytest.raises(CheckpointError, match="config.json: not found"):
        load_hf(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((directory / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable"):
        load_hf(broken)
    config = json.loads((directory / "config.json").read_text())
    for key, value, pattern in [("tie_word_embeddings", False, "tie_word_embeddings=False"),
                                ("num_hidden_layers", 3, "missing"),
                                ("hidden_size", 66, "d_model=66")]:
        (broken / "config.json").write_text(json.dumps({**config, key: value}))
        (broken / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
        with pytest.raises(CheckpointError, match=f"(config.json|model.safetensors).*{pattern}") as exc:
            load_hf(broken)
        assert "\n" not in str(exc.value)
