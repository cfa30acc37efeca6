"""Passwords, access tokens, API keys and the scope vocabulary (no Flask, no commits)."""

from agent33.security.scopes import ALL_SCOPES, has_scopes, missing_scopes, validate_scopes

__all__ = ["ALL_SCOPES", "has_scopes", "missing_scopes", "validate_scopes"]
