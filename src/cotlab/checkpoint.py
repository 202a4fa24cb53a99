"""Models on disk: the final model as a Hugging Face Llama directory, and step-N resume checkpoints.

HF format. `save_hf` writes config.json + model.safetensors that
`transformers.LlamaForCausalLM.from_pretrained(dir)` loads (the authors' model class, docs/models.md), under HF parameter names, with the tied output layer omitted as HF itself does. Our RoPE uses
HF's `rotate_half` convention, so q/k weights map 1:1 with no permutation (unlike Meta-format
checkpoints; cf. torchtitan `llama3/state_dict_adapter.py`). A run's final/ also gets
generation_config.json (`generation_config`): greedy, cotlab's decoding budget for the run's format,
and the format's ⟨bos⟩ / ⟨eos⟩ / pad ids, null where the data has no special tokens.

Resume checkpoints. `write_checkpoint` writes RUN_DIR/checkpoints/step-N/ (model.safetensors under
our names, optimizer.safetensors, train_state.json, rng-rank{r}.json of every rank): everything
`cotlab train` needs to continue bit-identically, and last manifest.json, the SHA-256 of each of
those files. The newest two are kept. `Checkpointer` runs it in a background thread on host copies
taken at the step, one write at a time, so that training does not wait for the disk.
Neither format has a checksum of its own, and a disk, a copy or a crash can damage a directory
after its rename, so `good_checkpoint` resumes only from one whose every file matches its manifest:
a damaged newest checkpoint costs the steps since the previous one and a warning, never a silently
different result.

Loading never unpickles: safetensors and JSON only. Directories appear atomically (written
under a temporary name, then renamed), so a directory that exists was complete when written.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cotlab.atomic import replace_dir
from cotlab.config import ConfigError, DataConfig, build, read_json
from cotlab.data.store import file_sha256
from cotlab.formats import PromptConfig, max_new_tokens
from cotlab.model import Transformer
from cotlab.model_config import ModelConfig
from cotlab.prompts_export import eval_prompt_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENERATION_FILE = "generation_config.json"

# ours <-> HF, per layer ("{i}" is the layer index); the model-level names are below.
_LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_MODEL_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")
_HF_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class CheckpointError(ConfigError):
    """A checkpoint directory that is missing, incomplete or not a model we can load (one line)."""


def state_dict_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameter names -> HF `LlamaForCausalLM` names (same tensors, no copies)."""
    out = {}
    for name, tensor in state_dict.items():
        match = _LAYER_KEY.match(name)
        if match and match.group(2) in _LAYER_NAMES:
            out[f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"] = tensor
        elif name in _MODEL_NAMES:
            out[_MODEL_NAMES[name]] = tensor
        else:
            raise CheckpointError(f"parameter {name!r}: has no HF Llama name")
    return out


def hf_to_state_dict(hf_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF `LlamaForCausalLM` names -> ours; a tied `lm_head.weight`, if present, is dropped."""
    from_hf_layer = {hf: ours for ours, hf in _LAYER_NAMES.items()}
    from_hf_model = {hf: ours for ours, hf in _MODEL_NAMES.items()}
    out = {}
    for name, tensor in hf_state_dict.items():
        match = _HF_LAYER_KEY.match(name)
        if match and match.group(2) in from_hf_layer:
            out[f"layers.{match.group(1)}.{from_hf_layer[match.group(2)]}"] = tensor
        elif name in from_hf_model:
            out[from_hf_model[name]] = tensor
        elif name != "lm_head.weight":  # the output layer is tied to the embedding
            raise CheckpointError(f"parameter {name!r}: not a tied-embedding Llama parameter")
    return out


def hf_config(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig -> a `transformers.LlamaConfig` dict (v4 `rope_theta` and v5 `rope_parameters`)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "torch_dtype": "float32",
        "dtype": "float32",
        # No BOS/EOS: the data has no such ids, and HF generate() must not stop early on id 2.
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "use_cache": True,
    }


def model_config_from_hf(config: dict[str, Any], source: str = CONFIG_FILE) -> ModelConfig:
    """A LlamaConfig dict -> ModelConfig; refuses what our Transformer cannot represent."""
    def need(key: str, allowed: Any, default: Any = None) -> None:
        value = config.get(key, default)
        if value != allowed:
            raise CheckpointError(f"{source}: {key}={value!r}: must be {allowed!r}")

    need("architectures", ["LlamaForCausalLM"])
    need("tie_word_embeddings", True)
    need("hidden_act", "silu", "silu")
    need("attention_bias", False, False)
    need("mlp_bias", False, False)
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise CheckpointError(f"{source}: rope_parameters={rope!r}: only rope_type 'default' is supported")
    try:
        cfg = build(ModelConfig, {
            "n_layer": config["num_hidden_layers"], "d_model": config["hidden_size"],
            "n_head": config["num_attention_heads"],
            "n_kv_head": config.get("num_key_value_heads", config["num_attention_heads"]),
            "d_ff": config["intermediate_size"], "vocab_size": config["vocab_size"],
            "rope_theta": float(rope.get("rope_theta", config.get("rope_theta", 1e4))),
            "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
            "init_std": float(config.get("initializer_range", 0.02)),
            "max_seq_len": config.get("max_position_embeddings", 131_072),
        })
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing key {exc.args[0]!r}") from None
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    need("head_dim", cfg.head_dim, cfg.head_dim)
    return cfg


def generation_config(data_cfg: DataConfig, prompt_cfg: PromptConfig, budget: int | None = None) -> dict[str, Any]:
    """The `transformers.GenerationConfig` of a model trained on `data_cfg` in `prompt_cfg`'s format.

    Greedy (do_sample false, one beam). max_new_tokens is the budget cotlab's evaluation decodes
    that format's prompts with (`cotlab.formats.max_new_tokens`, the format forced as `cotlab
    evaluate` forces it): 1 (standard), C (cot), C+4 (the forced special-token formats), C+5
    (hybrid, unforced), or `budget` when the run sets one (`eval_max_new_tokens`; paper 2's 100).
    bos/eos/pad are the data's ⟨bos⟩, ⟨eos⟩ and pad ids plus the prompt
    offset; null for formats without special tokens (their sequences have no such tokens, and
    generation must not stop early).
    """
    recipe = {"recipe": prompt_cfg.recipe.to_dict()} if prompt_cfg.recipe is not None else {}
    scored = eval_prompt_config(prompt_cfg.format, data_cfg, {"offset": prompt_cfg.offset, **recipe})
    special = {name: i + prompt_cfg.offset for name, i in data_cfg.special_ids().items()}
    return {"bos_token_id": special.get("bos"), "eos_token_id": special.get("eos"),
            "pad_token_id": special.get("pad"), "do_sample": False, "num_beams": 1,
            "max_new_tokens": max_new_tokens(data_cfg, scored, budget)}


def save_hf(model: Transformer, directory: str | Path, generation: dict[str, Any] | None = None) -> Path:
    """Write `directory`/{config.json, model.safetensors} (fp32, HF names) atomically; returns it.

    Also generation_config.json when `generation` is given (`cotlab train` passes its run's
    `generation_config`); none otherwise.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; others on a shared cluster should read the model
    try:
        tensors = {name: t.detach().to("cpu", torch.float32).contiguous()
                   for name, t in state_dict_to_hf(model.state_dict()).items()}
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config(model.cfg), indent=2) + "\n")
        if generation is not None:
            (tmp / GENERATION_FILE).write_text(json.dumps(generation, indent=2) + "\n")
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_hf(directory: str | Path, device: torch.device | str = "cpu") -> Transformer:
    """Read a `save_hf` (or HF tied-embedding Llama) directory -> fp32 Transformer on `device`."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: not found (not a complete checkpoint directory)")
    cfg = model_config_from_hf(read_json(config_path, CheckpointError), str(config_path))
    try:
        tensors = load_file(weights_path, device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from None
    state_dict = hf_to_state_dict(tensors)
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = model.state_dict()
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"{weights_path}: missing {missing[:3]}, unexpected {unexpected[:3]} "
                              "parameters")
    for name, tensor in state_dict.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(f"{weights_path}: {name} has shape {tuple(tensor.shape)}, "
                                  f"config.json implies {tuple(expected[name].shape)}")
    model.load_state_dict({name: t.float() for name, t in state_dict.items()}, assign=True)
    return model


# ---------------------------------------------------------------------------------------------
# Resume checkpoints: complete or absent, verified against their manifest, the newest two kept.

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = ("model.safetensors", "optimizer.safetensors", "train_state.json")
KEEP = 2  # the newest checkpoint and the one before it, to fall back to if the newest is damaged


@dataclass
class TrainState:
    """What a checkpoint stores besides weights and optimizer moments (train_state.json)."""

    step: int = 0
    tokens_seen: int = 0  # real (non-padding) input tokens, all ranks
    interval_loss: float = 0.0  # sum over steps since the last eval of each step's mean CE, all ranks
    interval_steps: int = 0
    elapsed_s: float = 0.0  # wall clock spent training and evaluating, summed over restarts
    loader: dict[str, int] = field(default_factory=dict)
    metrics: list[dict[str, float]] = field(default_factory=list)


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step}"


def checkpoint_steps(out: Path) -> list[int]:
    """Steps of the checkpoints/step-N directories of run directory `out`, newest first
    (temporary ones never match)."""
    return sorted((int(m.group(1)) for p in (out / "checkpoints").glob("step-*")
                   if (m := STEP_DIR.match(p.name)) and p.is_dir()), reverse=True)


def checkpoint_damage(path: Path) -> str | None:
    """Why checkpoint directory `path` cannot be trusted, one line naming the file; None if intact.

    safetensors and JSON carry no checksum, so a flipped bit or a short write would otherwise load
    silently: every file must match the SHA-256 that manifest.json, written last, records for it.
    """
    manifest = path / MANIFEST_FILE
    if not manifest.is_file():
        return f"{manifest}: missing (the checkpoint is incomplete)"
    try:
        files = read_json(manifest, CheckpointError)["files"]  # {file name: sha256 hex}
        valid = all(isinstance(digest, str) and Path(name).name == name for name, digest in files.items())
    except (CheckpointError, TypeError, KeyError, AttributeError):
        valid = False
    if not valid:
        return f"{manifest}: unreadable (not a checkpoint manifest)"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"{manifest}: does not list {name}"
    for name, digest in files.items():
        if not (path / name).is_file():
            return f"{path / name}: missing"
        if file_sha256(path / name) != digest:
            return f"{path / name}: sha256 does not match {MANIFEST_FILE} (damaged)"
    return None


def good_checkpoint(out: Path, warn: Callable[[str], None]) -> int | None:
    """The step of the newest intact checkpoint of run directory `out`, None if there is none;
    each damaged newer one is reported through `warn` (one line naming the damaged file)."""
    for step in checkpoint_steps(out):
        damage = checkpoint_damage(checkpoint_dir(out, step))
        if damage is None:
            return step
        warn(f"{damage}; not resuming from step {step}")
    return None


def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch CPU (and CUDA) generator states as JSON-able lists."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(mt), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state().tolist(),
            "cuda": torch.cuda.get_rng_state(device).tolist() if device.type == "cuda" else None}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def gather_rng_states(device: torch.device, world_size: int) -> list[dict[str, Any]]:
    """Every rank's `rng_state`, in rank order, on every rank (a collective: every rank must call it)."""
    state = rng_state(device)
    if world_size == 1:
        return [state]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, state)  # in memory between our own ranks; the files are JSON
    return states


def write_checkpoint(out: Path, step: int, weights: dict[str, torch.Tensor], moments: dict[str, torch.Tensor],
                     train_state: str, rng_states: list[dict[str, Any]]) -> None:
    """Write checkpoints/step-`step` atomically, manifest.json last, then keep only it and the newest
    older one (`prune_checkpoints`). `weights` and `moments` are CPU tensors, `train_state` is the
    text of train_state.json and `rng_states` holds one `rng_state` per rank. Rank 0 only."""
    root = out / "checkpoints"
    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file(weights, tmp / "model.safetensors")
        save_file(moments, tmp / "optimizer.safetensors")
        (tmp / "train_state.json").write_text(train_state)
        for rank, state in enumerate(rng_states):
            (tmp / f"rng-rank{rank}.json").write_text(json.dumps(state))
        files = {path.name: file_sha256(path) for path in sorted(tmp.iterdir())}
        (tmp / MANIFEST_FILE).write_text(json.dumps({"step": step, "files": files}, indent=2) + "\n")
        replace_dir(tmp, checkpoint_dir(out, step))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves no temporary directory
    prune_checkpoints(out, step)


class Checkpointer:
    """Resume checkpoints written by a background thread, at most one write in flight.

    `save` copies the weights and AdamW moments into host buffers (pinned on CUDA, allocated once and
    reused; the copies are queued on the device, so the training thread does not wait for them) and
    hands them to the writer thread, which waits for the copies and runs `write_checkpoint`. Training
    goes on meanwhile: the buffers, not the live parameters, are written. The next `save` and `close`
    first wait for the write in flight, and a write that failed is raised there, a one-line
    CheckpointError for a filesystem error. Only rank 0 writes; the others take part in gathering the
    RNG states.
    """

    def __init__(self, out: Path, model: Transformer, optimizer: torch.optim.Optimizer, rank: int,
                 world_size: int, device: torch.device):
        self.out, self.model, self.optimizer = out, model, optimizer
        self.rank, self.world_size, self.device = rank, world_size, device
        self.pin = device.type == "cuda"
        self.weights: dict[str, torch.Tensor] = {}  # host copies, reused by every save
        self.moments: dict[str, torch.Tensor] = {}
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self.pending: Future[None] | None = None

    def save(self, state: TrainState) -> None:
        """Snapshot `state` (its step), the weights, moments and every rank's RNG state; write them in
        the background. Every rank must call it at the same step."""
        rng_states = gather_rng_states(self.device, self.world_size)
        if self.rank != 0:
            return
        self.wait()  # the previous write still reads the buffers
        self.host_copy(self.model.state_dict(), self.weights)
        self.host_copy({f"{index}.{name}": value for index, per_param in self.optimizer.state_dict()["state"].items()
                        for name, value in per_param.items()}, self.moments)
        copied = None
        if self.pin:
            copied = torch.cuda.Event()
            copied.record()
        self.pending = self.writer.submit(self.write, state.step, copied, json.dumps(asdict(state)), rng_states)

    def host_copy(self, tensors: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
        """Copy `tensors` into `buffers` (same names), allocating a buffer on first use."""
        for name, tensor in tensors.items():
            if name not in buffers:
                buffers[name] = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=self.pin)
            buffers[name].copy_(tensor.detach(), non_blocking=self.pin)

    def write(self, step: int, copied: torch.cuda.Event | None, train_state: str,
              rng_states: list[dict[str, Any]]) -> None:
        """The writer thread's job: wait for the device-to-host copies, then write the directory."""
        if copied is not None:
            copied.synchronize()
        try:
            write_checkpoint(self.out, step, self.weights, self.moments, train_state, rng_states)
        except OSError as exc:
            raise CheckpointError(f"{checkpoint_dir(self.out, step)}: cannot be written ({exc})") from None

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write (raising its error) and stop the writer thread."""
        try:
            self.wait()
        finally:
            self.writer.shutdown()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """Join the writer; when the run is failing already, its own error is the one raised."""
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise


def prune_checkpoints(out: Path, step: int) -> None:
    """Keep step-`step` and the newest older checkpoint; remove the rest of checkpoints/: older
    ones, leftovers of killed writes, and newer ones (damaged ones that this run is recomputing)."""
    keep = {f"step-{s}" for s in [step, *[s for s in checkpoint_steps(out) if s < step][:KEEP - 1]]}
    for path in (out / "checkpoints").iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def load_checkpoint(path: Path, model: Transformer, optimizer: torch.optim.Optimizer, rank: int,
                    device: torch.device) -> TrainState:
    """Restore weights, optimizer moments, this rank's RNG state; return the train state.

    `path` has passed `checkpoint_damage`; a file that still does not load is from another model or
    cotlab version, a one-line CheckpointError.
    """
    try:
        model.load_state_dict(load_file(path / "model.safetensors", device=str(device)))
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in load_file(path / "optimizer.safetensors").items():
            index, name = key.split(".", 1)
            moments.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": moments, "param_groups": optimizer.state_dict()["param_groups"]})
        rng_file = path / f"rng-rank{rank}.json"
        if rng_file.is_file():  # absent when resuming with more ranks; nothing in training draws from it
            set_rng_state(read_json(rng_file, CheckpointError), device)
        return TrainState(**read_json(path / "train_state.json", CheckpointError))
    except (SafetensorError, OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: cannot be resumed from ({reason})") from None


__all__ = ["CheckpointError", "TrainState", "checkpoint_damage", "checkpoint_dir", "generation_config",
           "Checkpointer", "good_checkpoint", "hf_config", "hf_to_state_dict", "load_checkpoint", "load_hf",
           "model_config_from_hf", "save_hf", "state_dict_to_hf", "write_checkpoint"]
