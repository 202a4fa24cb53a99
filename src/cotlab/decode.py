"""Greedy or sampled decoding with a preallocated KV cache, kept apart from the model (nanochat `engine.py`).

The prompt batch is prefilled in one forward pass, then each step feeds one token per row and
reads/writes the static cache. Left-padded prompts are supported: each row's RoPE positions
continue from its own prompt length, and padded slots stay masked for every later step.

Sampling (`temperature` > 0) draws each token from softmax(logits / temperature) with the caller's
torch.Generator; `n_samples` generations of a prompt share its prefill: the cache's rows are
repeated after it, so the prompt goes through the model once however many samples there are.

`prefill_and_decode` can also teacher-force a continuation after the prompt (evaluation's loss
on the reference target, `cotlab.metrics.score_rows`): it is fed into the cache after the prefill,
then the cache is rewound to the prompt and decoding goes on from there, so every prompt token
goes through the model once.

A `torch.compile(model, dynamic=True)` model decodes here too (the in-training evaluation with
`compile: true`): its cache (`CompiledModelKVCache`) leaves the two methods the model calls eager,
so each layer's compiled code sees plain tensors whose lengths are dynamic, and a growing cache
does not recompile.

CUDA graphs: not yet. The cache is preallocated at its final size so that capturing the
one-token step can be added without changing this interface; in paper 1 the prefill dominates
(max_new_tokens = C = 2..5 after a 238..358-token prompt).

Letters: B batch, Tp prompt length, T tokens of one forward, S filled cache slots, G key/value
heads, Dh head dim, L layers, V vocabulary, n new tokens.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from cotlab.config import fail
from cotlab.model import Transformer, positions_from_mask


STOP_CHECK = 4  # decoding steps between two looks at whether every row has stopped
# Compiled variants a compiled model's code may accumulate while decoding (torch's default is 8): each
# graph between the cache's eager calls is compiled per shape class (one-token steps, slices of the
# cache that are or are not contiguous, ...); 7 seen for the attention of a mixed-shape hybrid run.
COMPILED_DECODE_RECOMPILES = 32


class KVCache:
    """Keys and values of every layer for B sequences of up to `max_len` slots, allocated once.

    Slot s of row b holds the s-th token fed to the model for that row (left padding included);
    `key_valid` marks the real ones. A forward pass calls `prepare` once, then `insert_kv` once per
    layer in order, so the cache counts the layers itself (`layer`) and the model passes no layer
    index (a compiled model would otherwise specialise each layer's code on its own index); the
    last layer's `insert_kv` advances `length`, as in nanochat, so one forward pass fills T slots.
    """

    def __init__(self, n_layer: int, batch_size: int, max_len: int, n_kv_head: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        self.n_layer, self.max_len = n_layer, max_len
        self.k = torch.zeros(n_layer, batch_size, n_kv_head, max_len, head_dim, dtype=dtype,
                             device=device)  # (L, B, G, max_len, Dh)
        self.v = torch.zeros_like(self.k)  # (L, B, G, max_len, Dh)
        self.key_valid = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)  # (B, max_len)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) RoPE position
        self.length = 0  # filled slots S
        self.layer = 0  # the layer whose insert_kv comes next in this forward pass
        self.padded = False  # once a slot may be padding, attention needs an explicit mask

    def prepare(self, attention_mask: torch.Tensor | None, T: int
                ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Claim the next T slots for one forward pass.

        attention_mask (B, T) bool | None -> positions (B, T) int64, key_valid (B, S + T) bool or
        None when SDPA needs no mask, and whether SDPA's own causal mask is exact (an empty cache).
        """
        start, stop = self.length, self.length + T
        self.layer = 0
        if stop > self.max_len:
            fail("KVCache.max_len", self.max_len, f"is too small for {stop} slots")
        if attention_mask is None:
            positions = self.next_position[:, None] + torch.arange(T, device=self.k.device)  # (B, T)
            self.next_position += T
        else:
            self.key_valid[:, start:stop] = attention_mask
            self.padded = True
            positions = self.next_position[:, None] + positions_from_mask(attention_mask)  # (B, T)
            self.next_position += attention_mask.sum(dim=-1)
        if self.padded or (start > 0 and T > 1):
            return positions, self.key_valid[:, :stop], False
        return positions, None, start == 0  # one new query may attend to every filled slot

    def mark(self) -> tuple[int, torch.Tensor, bool]:
        """The fill state now (filled slots, next RoPE positions, padded), for `rewind`."""
        return self.length, self.next_position.clone(), self.padded

    def rewind(self, mark: tuple[int, torch.Tensor, bool]) -> None:
        """Forget every slot filled since `mark`: the next forward writes over them.

        Keys and values past `length` are never read before being overwritten (`insert_kv`
        returns only the filled prefix), so nothing but the bookkeeping needs resetting.
        """
        self.length, position, self.padded = mark
        self.next_position.copy_(position)
        self.key_valid[:, self.length:] = True

    def repeat_rows(self, n: int) -> None:
        """Row b becomes rows b·n .. b·n+n-1 (the same filled slots), e.g. n samples of one prompt."""
        self.k = self.k.repeat_interleave(n, dim=1)  # (L, B·n, G, max_len, Dh)
        self.v = self.v.repeat_interleave(n, dim=1)
        self.key_valid = self.key_valid.repeat_interleave(n, dim=0)  # (B·n, max_len)
        self.next_position = self.next_position.repeat_interleave(n, dim=0)  # (B·n,)

    def insert_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the next layer's k, v (B, G, T, Dh) into the next T slots -> its keys, values (B, G, S, Dh)."""
        layer, self.layer = self.layer, self.layer + 1
        start, stop = self.length, self.length + k.size(2)
        self.k[layer, :, :, start:stop] = k
        self.v[layer, :, :, start:stop] = v
        if layer == self.n_layer - 1:
            self.length = stop
        return self.k[layer, :, :, :stop], self.v[layer, :, :, :stop]


class CompiledModelKVCache(KVCache):
    """The KVCache `prefill_and_decode` gives a `torch.compile`d model: the two methods the model calls
    run eager (a graph break each). Traced, the Python fill length would be a constant of the graph
    and recompile it at every step; eager, the compiled layers see only tensors of dynamic length.
    Eager models keep the plain KVCache: they never enter torch._dynamo."""

    prepare = torch.compiler.disable(KVCache.prepare)
    insert_kv = torch.compiler.disable(KVCache.insert_kv)


def activation_dtype(model: Transformer, device: torch.device) -> torch.dtype:
    """The dtype keys and values are computed in: the autocast dtype if enabled, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return model.tok_embeddings.weight.dtype


class Decoded(NamedTuple):
    """What `prefill_and_decode` returns (B rows, Tp prompt slots, Tc continuation tokens, n new tokens)."""

    tokens: torch.Tensor  # (B·S, n) int64: row b·S + s is sample s of prompt b (S = n_samples)
    logits: torch.Tensor  # (B·S, n, V) float32: logits[:, i] produced tokens[:, i]
    prompt_logits: torch.Tensor  # (B, Tp, V) float32: the prefill's logits at every prompt slot
    continuation_logits: torch.Tensor | None  # (B, Tc, V) float32: teacher-forced continuation; None without


@torch.no_grad()
def prefill_and_decode(model: Transformer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None,
                       max_new_tokens: int = 1, stop_id: int | None = None,
                       continuation: torch.Tensor | None = None, temperature: float = 0.0,
                       n_samples: int = 1, generator: torch.Generator | None = None,
                       min_steps: int | None = None) -> Decoded:
    """Greedy decoding (`greedy_decode`) that also keeps the prefill's logits of every prompt slot
    and, given `continuation` (B, Tc) int64, teacher-forces it after the prompt.

    With `temperature` > 0 each token is sampled (`next_tokens`, drawn from `generator`), and each
    prompt is decoded `n_samples` times from one prefill: the returned tokens and logits have
    B·n_samples rows, sample s of prompt b in row b·n_samples + s.

    With `stop_id` and `min_steps`, decoding ends early once every row has emitted `stop_id` and at
    least `min_steps` tokens are decoded (looked at every STOP_CHECK steps: each look waits for the
    device): the tokens are filled up to max_new_tokens with `stop_id`, exactly what the remaining
    steps would have produced, and the logits cover the decoded steps only. Paper 2's budget of 100
    tokens then costs what the longest generation of the batch needs.

    The continuation is one forward of Tc tokens into the cache right after the prefill; the cache
    is then rewound to the prompt and decoding continues exactly as without it (the prompt's keys
    and values and the RoPE positions are untouched, so tokens and logits are bit-identical).
    Its logits at slot i are those of the prompt followed by continuation[:, :i+1]. A row's
    continuation may end in filler after its real tokens: causal attention keeps filler from
    changing the logits before it. Evaluation passes Tc <= max_new_tokens - 1, so the cache has
    the size plain decoding gives it.
    """
    if prompt_ids.dim() != 2 or prompt_ids.size(1) == 0 or prompt_ids.dtype != torch.long:
        fail("prompt_ids", f"{tuple(prompt_ids.shape)} {prompt_ids.dtype}", "must be (B, Tp>0) int64")
    if max_new_tokens < 1:
        fail("max_new_tokens", max_new_tokens, "must be a positive integer")
    if not temperature >= 0:
        fail("temperature", temperature, "must be >= 0 (0 = greedy)")
    if n_samples < 1 or (n_samples > 1 and temperature == 0):
        fail("n_samples", n_samples, "must be 1, or more with temperature > 0")
    if prompt_mask is not None:
        if prompt_mask.shape != prompt_ids.shape or prompt_mask.dtype != torch.bool:
            fail("prompt_mask", f"{tuple(prompt_mask.shape)} {prompt_mask.dtype}",
                 f"must be bool with prompt_ids' shape {tuple(prompt_ids.shape)}")
        if not bool(prompt_mask[:, -1].all()):
            fail("prompt_mask", "a False last column", "prompts must be left-padded (last token real)")
    if continuation is not None and (continuation.dim() != 2 or continuation.dtype != torch.long
                                     or continuation.size(0) != prompt_ids.size(0)):
        fail("continuation", f"{tuple(continuation.shape)} {continuation.dtype}",
             f"must be (B={prompt_ids.size(0)}, Tc) int64")
    cfg, device = model.cfg, prompt_ids.device
    B, Tp = prompt_ids.shape
    Tc = 0 if continuation is None else continuation.size(1)
    cache_type = CompiledModelKVCache if hasattr(model, "_orig_mod") else KVCache  # _orig_mod: torch.compile's wrapper
    cache = cache_type(cfg.n_layer, B, Tp + max(max_new_tokens - 1, Tc), cfg.n_kv_head, cfg.head_dim,
                       activation_dtype(model, device), device)
    # A compiled model's code is compiled per shape class of the graphs between the cache's eager calls.
    # cache_size_limit: the name torch 2.5-2.6 knows; later releases keep it for recompile_limit.
    room = (torch._dynamo.config.patch(cache_size_limit=COMPILED_DECODE_RECOMPILES)
            if cache_type is CompiledModelKVCache else contextlib.nullcontext())
    with room:
        prompt_logits = model(prompt_ids, prompt_mask, cache)  # (B, Tp, V): batched prefill
        continuation_logits = None
        if Tc:
            prompt_end = cache.mark()
            continuation_logits = model(continuation, None, cache)  # (B, Tc, V): teacher-forced
            cache.rewind(prompt_end)
        logits = prompt_logits[:, -1]  # (B, V)
        if n_samples > 1:  # every sample continues from its prompt's prefill
            cache.repeat_rows(n_samples)
            logits = logits.repeat_interleave(n_samples, dim=0)  # (B·S, V)
        stopped = torch.zeros(logits.size(0), dtype=torch.bool, device=device)  # (B·S,)
        tokens, step_logits = [], []
        for step in range(max_new_tokens):
            next_token = next_tokens(logits, temperature, generator)  # (B·S,)
            if stop_id is not None:
                next_token = next_token.masked_fill(stopped, stop_id)
                stopped |= next_token == stop_id
            tokens.append(next_token)
            step_logits.append(logits)
            if (stop_id is not None and min_steps is not None and step + 1 >= min_steps
                    and (step + 1) % STOP_CHECK == 0 and bool(stopped.all())):
                tokens.append(torch.full((len(stopped), max_new_tokens - step - 1), stop_id, device=device))
                break
            if step + 1 < max_new_tokens:
                logits = model(next_token[:, None], None, cache)[:, -1]  # (B·S, V): one cached step
        return Decoded(torch.cat([t.view(len(stopped), -1) for t in tokens], dim=1),  # (B·S, n)
                       torch.stack(step_logits, dim=1),  # (B·S, n decoded, V)
                       prompt_logits, continuation_logits)


def next_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """(R, V) logits -> (R,) int64: the argmax at temperature 0, else a draw from softmax(logits / temperature)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (R, V), fp32 whatever the autocast
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def greedy_decode(model: Transformer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None,
                  max_new_tokens: int = 1, stop_id: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax decoding of `max_new_tokens` tokens after each prompt (no sampling, no early exit).

    prompt_ids (B, Tp) int64; prompt_mask (B, Tp) bool, False = left padding (None: no padding)
    -> tokens (B, n) int64, logits (B, n, V) float32 (logits[:, i] produced tokens[:, i]).
    Precision follows the caller's autocast context. With `stop_id`, a row that emitted it keeps
    emitting `stop_id` (like padding) while the batch goes on; its later logits are what the
    model gives after being fed `stop_id` and carry no meaning.
    """
    decoded = prefill_and_decode(model, prompt_ids, prompt_mask, max_new_tokens, stop_id)
    return decoded.tokens, decoded.logits


__all__ = ["CompiledModelKVCache", "Decoded", "KVCache", "greedy_decode", "next_tokens", "prefill_and_decode"]
