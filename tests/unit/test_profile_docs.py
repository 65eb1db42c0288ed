"""The generated reference and the JSON schema stay complete and up to date."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from hpcbridge.profiles import json_schema, model
from hpcbridge.profiles.docgen import SECTIONS, reference

REPO = Path(__file__).resolve().parents[2]


def test_committed_reference_is_up_to_date() -> None:
    committed = (REPO / "docs" / "profile-reference.md").read_text()
    assert committed == reference(), (
        "regenerate: python -m hpcbridge.profiles.docgen > docs/profile-reference.md"
    )


def test_every_field_has_a_description() -> None:
    schema = json_schema()
    definitions = {"SiteProfile": schema, **schema["$defs"]}
    for name, definition in definitions.items():
        assert definition.get("description"), name
        for key, prop in definition["properties"].items():
            assert prop.get("description"), f"{name}.{key}"


def test_reference_covers_every_model() -> None:
    models = {
        name for name, value in vars(model).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and not name.startswith("_")
        and value.__module__ == model.__name__
    }
    assert models == {name for name, _ in SECTIONS}
