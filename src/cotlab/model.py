"""A Llama-style decoder (the authors' HF `LlamaForCausalLM`, docs/models.md) in one file.

RMSNorm, rotary position embeddings (HF Llama convention: `rotate_half` on the two halves of a
head, so HF weights map 1:1 without a permutation), grouped-query attention through
`torch.nn.functional.scaled_dot_product_attention`, a SwiGLU MLP, tied input/output embeddings and
no biases. Decoding (the KV cache) lives in `cotlab.decode`; HF names and files in
`cotlab.checkpoint`.

Letters used in shape comments:
    B batch, T query length, S key length (T, or the filled cache length when decoding),
    D d_model, H query heads, G key/value heads (H is a multiple of G), Dh head dim (D / H),
    F d_ff (MLP width), V vocabulary, L layers.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from cotlab.model_config import ModelConfig


class KVCacheLike(Protocol):
    """What `Transformer.forward` needs from a cache (implemented by `cotlab.decode.KVCache`)."""

    def prepare(self, attention_mask: torch.Tensor | None, T: int
                ) -> tuple[torch.Tensor, torch.Tensor | None, bool]: ...

    def insert_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def causal_padding_mask(key_valid: torch.Tensor, T: int) -> torch.Tensor:
    """Boolean SDPA mask (True = attend) for the last T of S slots: causal and no padded keys.

    key_valid (B, S) bool -> (B, 1, T, S) bool. Query i sits at slot S - T + i. A padded query
    would see no key at all (a NaN row), so every query also sees its own slot; those rows are
    ignored downstream.
    """
    S = key_valid.size(1)
    query_slot = torch.arange(S - T, S, device=key_valid.device)[:, None]  # (T, 1)
    key_slot = torch.arange(S, device=key_valid.device)[None, :]  # (1, S)
    allowed = (key_slot <= query_slot) & key_valid[:, None, :]  # (B, T, S)
    return (allowed | (key_slot == query_slot))[:, None]  # (B, 1, T, S)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left padding: (B, T) bool -> (B, T) int64 positions, 0 at each row's first real token."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, normalized in fp32 and returned in the input dtype (as HF Llama)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 positions -> cos, sin (B, T, Dh) float32, frequencies in HF Llama order."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions[..., None].float() * inv_freq  # (B, T, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (B, T, Dh): both halves share a frequency
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, heads, Dh), cos/sin (B, T, Dh) -> x rotated; pairs are (i, i + Dh/2)."""
    cos = cos[:, :, None].to(x.dtype)  # (B, T, 1, Dh)
    sin = sin[:, :, None].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)  # (B, T, heads, Dh/2) each
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Causal grouped-query self-attention with RoPE."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> q (B, H, T, Dh), k and v (B, G, T, Dh), RoPE applied to q and k."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_head, self.head_dim)  # (B, T, H, Dh)
        k = self.wk(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, G, Dh)
        v = self.wv(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, G, Dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|G, T, Dh)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, is_causal: bool, cache: KVCacheLike | None) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D); mask (B, 1, T, S) bool or None (then `is_causal` decides)."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        if cache is not None:
            k, v = cache.insert_kv(k, v)  # (B, G, S, Dh): this layer's whole filled prefix
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           enable_gqa=True)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H*Dh)
        return self.wo(y)

    def probs(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
              ) -> torch.Tensor:
        """Explicit softmax attention: x (B, T, D), mask (B, 1, T, T) -> (B, H, T, T) float32."""
        q, k, _ = self.qkv(x, cos, sin)
        # query head h reads key head h // (H / G), as SDPA's enable_gqa and HF's repeat_kv do
        k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)  # (B, H, T, Dh)
        scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T)
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), HF's down(silu(gate x) * up x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)  # gate
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)  # down
        self.w3 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)  # up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, F) inside, (B, T, D) out


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.feed_forward = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, is_causal: bool, cache: KVCacheLike | None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, is_causal, cache)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    """Decoder-only LM. Weights stay fp32; precision is the caller's autocast context.

    Parameters hold PyTorch's default init until `init_weights(seed)` is called (the trainer does),
    so that a model built on the meta device or loaded from a checkpoint does no wasted work.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        # The output projection is tied to tok_embeddings (docs/models.md): no separate weight.

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Draw every weight from a CPU generator seeded `seed`, so CPU and GPU inits are equal.

        | parameter                                     | init                  |
        |-----------------------------------------------|-----------------------|
        | tok_embeddings (V, D), also the output layer  | normal(0, init_std)   |
        | attention wq, wk, wv, wo                      | normal(0, init_std)   |
        | feed_forward w1, w2, w3                       | normal(0, init_std)   |
        | attention_norm, ffn_norm, norm                | ones                  |

        init_std = 0.02 (HF `initializer_range`, as the authors' `LlamaForCausalLM`).
        """
        generator = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                draw = torch.empty(param.shape).normal_(0.0, self.cfg.init_std, generator=generator)
                param.copy_(draw)

    def num_params(self) -> int:
        """Parameters, the tied embedding counted once (= 60,821,504·L + 2,048 + 2,048·V for tf*)."""
        return sum(p.numel() for p in self.parameters())

    def _inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                cache: KVCacheLike | None):
        """Embeddings (B, T, D), RoPE cos/sin (B, T, Dh) and the SDPA mask for one forward."""
        T = input_ids.size(1)
        if cache is not None:
            positions, key_valid, is_causal = cache.prepare(attention_mask, T)
            mask = None if key_valid is None else causal_padding_mask(key_valid, T)
        elif attention_mask is None:
            positions = torch.arange(T, device=input_ids.device)[None]  # (1, T)
            mask, is_causal = None, True
        else:
            positions = positions_from_mask(attention_mask)  # (B, T)
            mask, is_causal = causal_padding_mask(attention_mask, T), False
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta)
        return self.tok_embeddings(input_ids), cos, sin, mask, is_causal

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCacheLike | None = None) -> torch.Tensor:
        """input_ids (B, T) int64, attention_mask (B, T) bool, False = left padding -> (B, T, V) float32.

        Without a mask every row is a full causal sequence. With one, positions restart at each
        row's first real token and padded keys are masked. With a cache (`cotlab.decode`), the
        T tokens continue the cached sequences.
        """
        x, cos, sin, mask, is_causal = self._inputs(input_ids, attention_mask, cache)
        for block in self.layers:
            x = block(x, cos, sin, mask, is_causal, cache)  # (B, T, D)
        x = self.norm(x)
        return F.linear(x, self.tok_embeddings.weight).float()  # (B, T, V), tied output layer

    @torch.no_grad()
    def last_layer_attention(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                             ) -> torch.Tensor:
        """Head-averaged softmax attention of the last layer, by explicit math (no SDPA).

        input_ids (B, T) int64, attention_mask (B, T) bool | None -> (B, T, T) float32, rows =
        queries summing to 1. A padded query attends only to itself.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        x, cos, sin, mask, is_causal = self._inputs(input_ids, attention_mask, None)
        for block in self.layers[:-1]:
            x = block(x, cos, sin, mask, is_causal, None)  # (B, T, D)
        last = self.layers[-1]
        return last.attention.probs(last.attention_norm(x), cos, sin, mask).mean(dim=1)  # (B, T, T)


__all__ = ["Transformer"]
