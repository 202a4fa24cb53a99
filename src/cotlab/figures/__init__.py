"""Figures, one module per family; every module draws from a finished table and never trains.

`theme` holds the shared look (colours per model, solid CoT / dashed standard, labels with units).
Only these modules and `cotlab.aggregate` import matplotlib.
"""
