"""docs/configuration.md's table is generated from the settings classes and must be up to date."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.config import PROJECT_ROOT, ServiceSettings
from shared.config_doc import CONFIG_DOC, render_table, rendered_page, settings_classes, stale, variables
from tests.unit.test_deploy_config import settings_classes as deploy_settings_classes


def test_configuration_page_matches_the_settings_classes():
    assert not stale(), "docs/configuration.md is out of date: run `python -m shared.config_doc --write` and commit it"


def test_every_settings_class_is_found_including_those_the_deploy_checks_know():
    found = {cls.__name__ for cls in settings_classes()}
    deploy = {name for name in deploy_settings_classes() if not name.startswith("_")}
    assert deploy <= found
    # And the other way: a settings class in a module tests/unit/test_deploy_config.py does not list would
    # escape its check of compose/k8s variable names.
    assert found <= deploy, f"add the module of {sorted(found - deploy)} to SETTINGS_MODULES there"


def test_each_variable_is_one_row_with_every_class_that_declares_it():
    table = render_table()
    names = [v.name for v in variables()]
    assert len(names) == len(set(names))
    for name in names:
        assert table.count(f"| `{name}` |") == 1, name
    assert "KAFKA_BOOTSTRAP_SERVERS" in names and "DEV_SEED_SCALE" in names and "LOG_LEVEL" in names
    taxonomy_dir = next(v for v in variables() if v.name == "TAXONOMY_DIR")
    assert len(taxonomy_dir.declared_in) >= 1 and taxonomy_dir.default == "`config/taxonomies`"


def test_a_new_setting_lands_in_the_table_by_regenerating():
    class ExampleSettings(ServiceSettings):
        example_window_s: float = Field(2.5, gt=0, description="How long | an <example> waits.")
        example_dir: Path = Field(PROJECT_ROOT / ".dev" / "example", description="Where it keeps things.")
        example_on: bool = Field(False, description="Off by default.")
        example_url: str | None = Field(None, description="None = nowhere.")

    table = render_table([ExampleSettings])
    assert "| `EXAMPLE_WINDOW_S` | `2.5` | How long \\| an \\<example> waits. | `ExampleSettings` |" in table
    assert "| `EXAMPLE_DIR` | `.dev/example` |" in table
    assert "| `EXAMPLE_ON` | `false` |" in table and "| `EXAMPLE_URL` | none |" in table
    assert "`LOG_LEVEL`" not in table  # inherited: listed once, with ServiceSettings
    page = CONFIG_DOC.read_text()
    assert rendered_page(page).count("| `MARIADB_HOST` |") == 1
