"""`definitions/sensors/*.yaml` stored as `agent33 serve` stores them: checked, named by file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent33.automation.sensors import sync_sensors
from agent33.config import Settings
from agent33.db import session_scope
from agent33.errors import ValidationFailed
from tests.integration.automation.helpers import ON_FILE
from tests.integration.engine.helpers import save

pytestmark = [pytest.mark.automation, pytest.mark.usefixtures("committed_db")]

SENSOR = """\
name: drops
kind: file_change
workflow: on_file
directory: {directory}
glob: "*.txt"
inputs:
  path: "{{{{ event.path }}}}"
  change: "{{{{ event.type }}}}"
"""


def _sync(settings: Settings, root: Path) -> list[tuple[str, str, str]]:
    with session_scope() as session:
        rows = sync_sensors(session=session, settings=settings, directory=root)
        return [(r.name, r.spec["glob"], r.source) for r in rows]


def test_a_sensor_file_is_stored_updated_in_place_and_checked(
    settings: Settings, tmp_path: Path
) -> None:
    save(ON_FILE)
    own = settings.replace(file_roots=(tmp_path,))
    folder = tmp_path / "sensors"
    folder.mkdir()
    path = folder / "drops.yaml"
    path.write_text(SENSOR.format(directory="inbox"))
    assert _sync(own, tmp_path) == [("drops", "*.txt", str(path))]
    path.write_text(SENSOR.format(directory="inbox").replace("*.txt", "*.csv"))
    assert _sync(own, tmp_path) == [("drops", "*.csv", str(path))]

    path.write_text(SENSOR.format(directory="/etc"))
    with pytest.raises(ValidationFailed) as outside:
        _sync(own, tmp_path)
    assert outside.value.fields["file"] == str(path) and "directory" in outside.value.fields
    path.write_text(SENSOR.format(directory="inbox").replace("on_file", "no_such_flow"))
    with pytest.raises(ValidationFailed) as unknown:
        _sync(own, tmp_path)
    assert "workflow" in unknown.value.fields and str(path) in unknown.value.message
    (folder / "other.yaml").write_text(SENSOR.format(directory="inbox"))
    path.unlink()
    with pytest.raises(ValidationFailed) as misnamed:
        _sync(own, tmp_path)
    assert "name" in misnamed.value.fields
