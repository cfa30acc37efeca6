"""Benchmarks: Agent33 (state in PostgreSQL) against raw Celery on the same broker and worker."""
