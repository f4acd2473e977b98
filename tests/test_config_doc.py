"""The schema is the one source of every setting: each key is described there, and
config/README.md's table is what the schema says."""

from __future__ import annotations

import yaml

from tlflow import config_doc


def _schema():
    return yaml.safe_load(config_doc.SCHEMA.read_text())


def test_every_key_has_a_description():
    missing = [key for key, _, description in config_doc.rows(_schema()["properties"]) if not description]
    assert not missing, f"keys without a description in the schema: {missing}"


def test_readme_table_is_generated_from_the_schema():
    readme = config_doc.README.read_text()
    assert readme == config_doc.rendered(readme, _schema()), (
        "config/README.md's key table is out of date: run `.venv/bin/python -m tlflow.config_doc`"
    )


def test_table_lists_nested_keys_with_their_defaults():
    schema = {
        "properties": {
            "a": {
                "type": "object",
                "description": "section",
                "default": {},
                "properties": {"b": {"type": "integer", "default": 3, "description": "x | y"}},
            },
            "c": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["d"],
                    "properties": {"d": {"type": "string", "description": "z"}},
                },
            },
        },
        "required": ["c"],
    }
    assert config_doc.table(schema).splitlines()[2:] == [
        "| `a` |  | section |",
        "| `a.b` | `3` | x &#124; y |",
        "| `c` | (required) |  |",
        "| `c[].d` | (required) | z |",
    ]
