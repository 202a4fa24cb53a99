"""Analyses of trained models and runs: embedding similarity, attention-to-parent precision,
per-run summary tables and the paper's claims (experiments.md §3, fig_embed_sim, fig_attention).

Nothing here imports matplotlib; the training loop may import `similarity` and `attention`.
"""
