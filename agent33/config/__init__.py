"""Settings for every Agent33 process, built once from the environment (and an optional `.env`).

Each variable is declared once, as a `Settings` field made by `setting()` (settings.py): its
name, parser, default and meaning. Loading, validation, `config show` and the README table are
driven by those declarations (load.py); the parsers live in parsers.py.
"""

from __future__ import annotations

from agent33.config.declare import Var, setting
from agent33.config.load import VARIABLES, load_settings, masked, settings_table, validate
from agent33.config.parsers import LOG_LEVELS, PERIODS, ConfigError, RateSpec, parse_rate
from agent33.config.settings import DEV_SECRET, Settings

__all__ = [
    "DEV_SECRET",
    "LOG_LEVELS",
    "PERIODS",
    "VARIABLES",
    "ConfigError",
    "RateSpec",
    "Settings",
    "Var",
    "load_settings",
    "masked",
    "parse_rate",
    "setting",
    "settings_table",
    "validate",
]
