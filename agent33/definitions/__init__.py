"""Agent and workflow definitions: typed models, marshmallow schemas, file loader, registry."""
