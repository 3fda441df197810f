"""docs/configuration.md is generated from the config declaration, and
``make lint`` notices when it is stale."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "config_doc.py"


@pytest.fixture
def config_doc(tmp_path, monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declaration = tmp_path / "config_declaration.yaml"
    declaration.write_text(module.DECLARATION.read_text())
    monkeypatch.setattr(module, "DECLARATION", declaration)
    monkeypatch.setattr(module, "PAGE", tmp_path / "configuration.md")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def run(module, monkeypatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["config_doc.py", *args])
    return module.main()


def test_the_committed_page_is_current():
    spec = importlib.util.spec_from_file_location("config_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PAGE.read_text() == module.page()


def test_every_declared_option_has_its_section(config_doc, monkeypatch):
    assert run(config_doc, monkeypatch) == 0
    text = config_doc.PAGE.read_text()
    declared = yaml.safe_load(config_doc.DECLARATION.read_text())
    keys = [o["key"] for g in declared["groups"] for o in g["options"]]
    assert len(keys) > 10
    for key in keys:
        assert f"### `{key}`" in text


def test_a_changed_declaration_makes_the_check_fail(config_doc, monkeypatch,
                                                    capsys):
    assert run(config_doc, monkeypatch) == 0
    assert run(config_doc, monkeypatch, "--check") == 0
    declared = config_doc.DECLARATION.read_text()
    config_doc.DECLARATION.write_text(declared.replace(
        "Root folder of all depots", "Root of every depot", 1))
    assert run(config_doc, monkeypatch, "--check") == 1
    assert "is stale" in capsys.readouterr().err
