"""Data files shipped with the memory package (the embedding tokenizer)."""
