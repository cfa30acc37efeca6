"""Alembic migrations, shipped as a package so an installed `agent33 db upgrade` finds them."""
