"""Analyses of trained models and runs: embedding similarity, attention-to-parent precision,
per-run summary tables and the paper's claims (docs/evaluation.md, fig_embed_sim, fig_attention).

Nothing here imports matplotlib; training and `cotlab evaluate` share `model_analysis.analyse_model`.
"""
