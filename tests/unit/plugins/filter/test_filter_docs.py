"""Every filter the plugins define is documented (plugins/filter/<name>.yml): ansible-doc lists it with a
description and renders it without errors, and its documented options are the function's parameters."""

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
COLLECTION = "opendove.mailserver"


def defined_filters() -> dict:
    """name -> function, from the FilterModule of every filter plugin of this checkout."""
    found = {}
    for path in sorted((ROOT / "plugins" / "filter").glob("*.py")):
        plugin = importlib.import_module(f"ansible_collections.opendove.mailserver.plugins.filter.{path.stem}")
        assert Path(plugin.__file__).resolve() == path.resolve(), "imported from another checkout"
        found.update(plugin.FilterModule().filters())
    return found


FILTERS = defined_filters()


def ansible_doc(*args: str) -> str:
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", "filter", *args],
                            capture_output=True, text=True, check=False, cwd=ROOT, timeout=300,
                            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
                                     ANSIBLE_NOCOLOR="1"))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def listing() -> dict:
    return json.loads(ansible_doc("-l", "--json", COLLECTION))


@pytest.fixture(scope="module")
def docs() -> dict:
    return json.loads(ansible_doc("--json", *(f"{COLLECTION}.{name}" for name in FILTERS)))


@pytest.fixture(scope="module")
def rendered() -> dict:
    """name -> the text ansible-doc shows for it."""
    pages = ansible_doc(*(f"{COLLECTION}.{name}" for name in FILTERS)).split("> FILTER ")[1:]
    return {page.split()[0].removeprefix(f"{COLLECTION}."): page for page in pages}


def test_every_filter_is_listed_with_its_description(listing):
    assert set(listing) == {f"{COLLECTION}.{name}" for name in FILTERS}
    assert all(text and text != "UNDOCUMENTED" for text in listing.values()), listing


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_documentation_renders(rendered, name):
    assert name in rendered
    assert "UNDOCUMENTED" not in rendered[name] and "OPTIONS" in rendered[name] and "RETURN VALUES" in rendered[name]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_documented_options_are_the_parameters(docs, name):
    doc = docs[f"{COLLECTION}.{name}"]
    assert doc["doc"]["name"] == name and doc["examples"].strip() and "_value" in doc["return"]
    parameters = list(inspect.signature(FILTERS[name]).parameters.values())
    names = ["_input"] + [parameter.name for parameter in parameters[1:]]
    options = doc["doc"]["options"]
    assert sorted(options) == sorted(names) and doc["doc"]["positional"] == ", ".join(names)
    for option, parameter in zip(names, parameters):
        if parameter.default is inspect.Parameter.empty:
            assert options[option].get("required") is True, option
        else:
            assert not options[option].get("required") and options[option].get("default") == parameter.default, option
