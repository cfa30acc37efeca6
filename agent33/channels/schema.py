"""The shape of a channel, shared by the API and the definition files."""

from __future__ import annotations

import marshmallow as ma

from agent33.channels.registry import KINDS
from agent33.channels.store import NAME


class ChannelSpecSchema(ma.Schema):
    """A channel as the API receives it and as `definitions/channels/NAME.yaml` declares it."""

    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(KINDS))
    name = ma.fields.String(required=True, validate=ma.validate.Regexp(NAME))
    agent = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "The agent that answers (or give `workflow`)"},
    )
    workflow = ma.fields.String(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=200),
        metadata={"description": "A workflow each message starts; its result is sent back"},
    )
    api_url = ma.fields.Url(
        load_default=None,
        allow_none=True,
        require_tld=False,
        metadata={"description": "The platform API's base URL (default: the platform's own)"},
    )
    options = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        load_default=dict,
        metadata={"description": "discord: public_key, application_id; whatsapp: phone_number_id"},
    )
    secrets = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        load_default=dict,
        metadata={
            "description": "role -> vault secret name (default CHANNEL_<KIND>_<NAME>_<ROLE>)"
        },
    )
    require_pairing = ma.fields.Boolean(load_default=False)
    allowlist = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=200)),
        load_default=list,
        validate=ma.validate.Length(max=1000),
    )
