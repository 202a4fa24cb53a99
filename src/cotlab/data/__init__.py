"""The data stage: generator (data.md §2), prompt rendering (§3-4), Parquet storage (§6), loader."""
