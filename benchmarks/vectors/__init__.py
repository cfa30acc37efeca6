"""The vector search benchmark's parts; `benchmarks/vector_search.py` is the entry point."""

SEED = 33
DIMENSION = 384
TOP_K = 10
