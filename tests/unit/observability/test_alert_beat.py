"""Beat evaluates the alert rules every AGENT33_ALERT_TICK seconds, on the maintenance queue."""

from __future__ import annotations

import pytest

import celeryconfig
from agent33.config import load_settings
from agent33.wire import Queue, TaskName

pytestmark = pytest.mark.observability


def test_beat_evaluates_the_alert_rules_every_alert_tick() -> None:
    config = celeryconfig.build_config(
        load_settings({"AGENT33_ALERT_TICK": "12.5"}, dotenv_path=None)
    )
    entry = config["beat_schedule"][TaskName.EVALUATE_ALERTS.value]
    assert entry == {
        "task": "agent33.maintenance.evaluate_alerts",
        "schedule": 12.5,
        "options": {"expires": 12.5},
    }
    assert config["task_routes"]["agent33.maintenance.*"] == {"queue": Queue.MAINTENANCE.value}


def test_a_bad_alert_setting_names_the_variable() -> None:
    from agent33.config import ConfigError

    with pytest.raises(ConfigError, match="AGENT33_ALERT_RULES"):
        load_settings({"AGENT33_ALERT_RULES": "[1, 2]"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="AGENT33_ALERT_TICK"):
        load_settings({"AGENT33_ALERT_TICK": "-1"}, dotenv_path=None)
