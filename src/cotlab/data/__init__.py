"""The data stage: generator, Parquet storage and loader (docs/data.md), prompt rendering (docs/prompts.md)."""
