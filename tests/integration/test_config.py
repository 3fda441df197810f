"""Config declaration and start-up validation, as an operator sees them:
a real ``ckan`` command on an ini of the tests, refusing malformed and
hostile values with one clear line that names the option and repeats
no secret.

The validators' cases (and config.py's parsing) are in
``tests/unit/test_config.py``; here one value of each validator goes
through a real start (each start costs about 1.6 s).
"""
import subprocess
import sys
from pathlib import Path

import pytest

from ckanext.dcor_depot import config

CKAN = str(Path(sys.executable).with_name("ckan"))
#: A secret in hostile values: no output may repeat it.
SECRET = "s3cr3t-Key-0123"

OPTIONS = [
    "ckanext.dcor_depot.depots_path",
    "ckanext.dcor_depot.users_depot_name",
    "ckanext.dcor_depot.tmp_dir",
    "ckanext.dcor_depot.figshare_api_url",
    "ckanext.dcor_depot.figshare_dois_path",
    "ckanext.dcor_depot.browser_direct_upload",
    "dcor_object_store.access_key_id",
    "dcor_object_store.secret_access_key",
    "dcor_object_store.endpoint_url",
    "dcor_object_store.ssl_verify",
    "dcor_object_store.bucket_name",
    "dcor_object_store.local_backup_location",
    "dcor_object_store.upload_part_size",
    "dcor_object_store.upload_url_lifetime",
    "dcor_object_store.upload_max_size",
]


# CKAN 2.11 reads the logging setup from the file given with -c itself.
LOGGING = """
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""


@pytest.fixture
def write_ini(request, tmp_path):
    base = request.config.getoption("--ckan-ini")

    def write(**settings):
        lines = ["[app:main]", f"use = config:{Path(base).resolve()}"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        path = tmp_path / "ckan.ini"
        path.write_text("\n".join(lines) + "\n" + LOGGING)
        return path
    return write


def run_ckan(ini, *args):
    return subprocess.run([CKAN, "-c", str(ini), *args], capture_output=True,
                          text=True, timeout=120)


def test_declaration_lists_every_option(write_ini):
    result = run_ckan(write_ini(), "config", "declaration", "dcor_depot")
    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option in result.stdout
    assert "circle-{organization_id}" in result.stdout


def test_valid_config_passes(write_ini):
    result = run_ckan(write_ini(), "config", "validate")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key, value, message", [
    ("dcor_object_store.ssl_verify", "maybe", "expected true or false"),
    ("dcor_object_store.bucket_name", "circle", "{organization_id}"),
    ("dcor_object_store.endpoint_url", "objects.example.org",
     "http:// or https:// URL"),
    ("ckanext.dcor_depot.depots_path", "data/depots", "absolute path"),
    ("ckanext.dcor_depot.users_depot_name", "a/b", "plain folder name"),
    ("dcor_object_store.upload_part_size", "1048576", "part size from"),
    ("dcor_object_store.upload_url_lifetime", "0", "greater than 0"),
    ("dcor_object_store.upload_max_size", "-5", "greater than 0"),
])
def test_malformed_values_stop_ckan_with_clear_message(
        write_ini, key, value, message):
    result = run_ckan(write_ini(**{key: value}), "jobs", "list")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{key}: " in output
    assert message in output
    assert "Traceback" not in output


@pytest.mark.parametrize("key, value, message", [
    ("dcor_object_store.endpoint_url",
     f"http://admin:{SECRET}@127.0.0.1:7480", "carries credentials"),
    ("dcor_object_store.endpoint_url", "http://127.0.0.1:7480/?a=b",
     "without query or fragment"),
    ("ckanext.dcor_depot.depots_path", "/data/depots/../../etc",
     "contains '..'"),
])
def test_hostile_values_stop_ckan_and_hide_secrets(
        write_ini, key, value, message):
    result = run_ckan(write_ini(**{key: value}), "jobs", "list")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{key}: " in output and message in output
    assert SECRET not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("settings, message", [
    ({"dcor_object_store.secret_access_key": ""},
     "dcor_object_store.secret_access_key is empty"),
])
def test_inconsistent_s3_settings_stop_ckan(write_ini, settings, message):
    result = run_ckan(write_ini(**settings), "jobs", "list")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_s3_off_when_no_credentials_is_fine(write_ini):
    result = run_ckan(write_ini(**{
        "dcor_object_store.access_key_id": "",
        "dcor_object_store.secret_access_key": "",
        "dcor_object_store.endpoint_url": ""}), "config", "validate")
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults(with_plugins):
    assert config.figshare_dois_path().name == "figshare_dois.txt"
    assert config.figshare_dois_path().is_file()
    assert config.s3_available()
    assert config.browser_direct_upload() is True
    # test.ini turns it off (the devstack gateway speaks plain HTTP)
    assert config.s3_settings().ssl_verify is False
