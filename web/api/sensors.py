"""`/api/v1/sensors`: create, list, read and delete sensors, with what each last saw and did."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from agent33.automation.sensor_schema import SensorSchema
from agent33.automation.sensors import (
    check_static,
    create_sensor,
    delete_sensor,
    get_sensor,
    list_sensors,
)
from agent33.db import session_scope
from agent33.db.models import Sensor
from agent33.security import scopes as sc
from web.auth import require_scopes
from web.extensions import Blueprint, get_settings, list_schema

blp = Blueprint("sensors", __name__, url_prefix="/api/v1/sensors", description="Sensors")


class SensorStatusSchema(ma.Schema):
    """The sensor's definition and its state: when it last looked, fired and failed."""

    name = ma.fields.String()
    kind = ma.fields.String()
    workflow = ma.fields.String()
    event = ma.fields.String(allow_none=True)
    enabled = ma.fields.Boolean()
    source = ma.fields.String(metadata={"description": "`api` or the definition file"})
    spec = ma.fields.Dict(metadata={"description": "The validated definition"})
    checks = ma.fields.Integer(metadata={"description": "Checks (or events received) so far"})
    triggers = ma.fields.Integer(metadata={"description": "Runs started so far"})
    last_check_at = ma.fields.DateTime(allow_none=True)
    next_check_at = ma.fields.DateTime(allow_none=True)
    last_trigger_at = ma.fields.DateTime(allow_none=True)
    last_run_id = ma.fields.UUID(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    last_error_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()


class SensorKindQuerySchema(ma.Schema):
    kind = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(["file_change", "freshness", "event"])
    )


class SensorDeletedSchema(ma.Schema):
    name = ma.fields.String()
    deleted = ma.fields.Boolean()


SensorListSchema = list_schema(SensorStatusSchema, "Sensor")


@blp.route("")
class Sensors(MethodView):
    @require_scopes(sc.SENSORS_READ)
    @blp.arguments(SensorKindQuerySchema, location="query")
    @blp.response(200, SensorListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List sensors

        Every sensor by name, with its last check, trigger, run and error.
        """
        with session_scope() as session:
            rows = list_sensors(session=session, kind=query["kind"])
        return {"items": rows, "total": len(rows)}

    @require_scopes(sc.SENSORS_WRITE)
    @blp.arguments(SensorSchema)
    @blp.response(201, SensorStatusSchema)
    def post(self, spec: dict[str, Any]) -> tuple[Sensor, int, dict[str, str]]:
        """Create a sensor

        Checks the definition (kind fields, glob, `inputs` templates), that the workflow is
        stored, that `directory`/`path` lie under AGENT33_FILE_ROOTS and that `url` passes the
        outbound allowlist: 400 naming the field; 409 when the name is taken.
        """
        check_static(spec)
        with session_scope() as session:
            row = create_sensor(session=session, settings=get_settings(), spec=spec)
        return row, 201, {"Location": f"/api/v1/sensors/{row.name}"}


@blp.route("/<string:name>")
class SensorByName(MethodView):
    @require_scopes(sc.SENSORS_READ)
    @blp.response(200, SensorStatusSchema)
    def get(self, name: str) -> Sensor:
        """Get a sensor

        Its definition and state; 404 when absent.
        """
        with session_scope() as session:
            return get_sensor(session=session, name=name)

    @require_scopes(sc.SENSORS_WRITE)
    @blp.response(200, SensorDeletedSchema)
    def delete(self, name: str) -> dict[str, Any]:
        """Delete a sensor

        It stops at once; the runs it started stay. A sensor from a definition file comes
        back when the definitions are stored again (delete the file too).
        """
        with session_scope() as session:
            delete_sensor(session=session, name=name)
        return {"name": name, "deleted": True}
