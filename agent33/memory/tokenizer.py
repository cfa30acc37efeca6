"""The all-MiniLM-L6-v2 WordPiece tokenizer, shipped with the package (Apache-2.0).

One tokenizer serves the local embedding model and the chunker, so "a chunk of 200 tokens" means
what the model sees. Loaded once per process: the file is 450 KB of JSON.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

TOKENIZER_FILE = Path(__file__).with_name("assets") / "all-minilm-l6-v2.tokenizer.json"
MAX_SEQUENCE_TOKENS = 256  # sentence-transformers' max_seq_length for this model


@lru_cache(maxsize=1)
def minilm_tokenizer() -> Tokenizer:
    """The shared tokenizer: no padding, no truncation (callers choose both)."""
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def count_tokens(text: str) -> int:
    """Word pieces in `text`, without the [CLS]/[SEP] the model adds."""
    return len(minilm_tokenizer().encode(text, add_special_tokens=False).ids)
