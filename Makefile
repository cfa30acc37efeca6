# Shortcuts; the scripts work without make too.
.PHONY: demo test lint typecheck serve clean

demo:
	./scripts/demo

test:
	./scripts/test

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

serve:
	.venv/bin/agent33 serve

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
