"""Database access: declarative base, engine binding and the session boundary."""

from agent33.db.base import Base
from agent33.db.session import configure, dispose_after_fork, get_engine, session_scope

__all__ = ["Base", "configure", "dispose_after_fork", "get_engine", "session_scope"]
