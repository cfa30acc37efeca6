"""`python -m agent33.cli` (used where the console script is not on PATH)."""

from agent33.cli import main

main()
