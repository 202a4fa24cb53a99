"""cotlab: a reproducible, fast pipeline for CoT-ICL Lab (Kothapalli et al., ACL 2025) and CoT-Recipe."""

__version__ = "0.1.0"
