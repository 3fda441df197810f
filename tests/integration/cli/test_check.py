"""``ckan dcor-depot-check``: one line per check, exit 1 on any FAIL."""
from __future__ import annotations

import json
import time

import pytest
import requests

from ckanext.dcor_depot.cli.check import plugin_queues
from ckanext.dcor_depot.records import search_index
from ckanext.dcor_depot.storage import object_store
from tests.support.cli import invoke, summary

COMMAND = "dcor-depot-check"

# A bucket template of its own: the policy check looks at every bucket
# of the template, and other tests leave buckets of theirs behind.
TEMPLATE = "test-h14check-{organization_id}"
PROBE_PREFIX = "test-h14check-dcor-check-"

# A regular file where a folder is expected: root ignores permission
# bits, but nobody can create a file inside a file.
A_FILE = __file__

pytestmark = [
    pytest.mark.usefixtures("with_extended_cli"),
    pytest.mark.ckan_config("dcor_object_store.bucket_name", TEMPLATE),
]


@pytest.fixture
def worker(start_worker, pipeline):
    """A real `ckan jobs worker` on the plugin's queues, registered."""
    start_worker(*plugin_queues())
    deadline = time.monotonic() + 120
    while not all(map(search_index.worker_listens, plugin_queues())):
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.5)


@pytest.fixture
def own_buckets(pipeline):
    """Removes the buckets of this module's template afterwards."""
    yield
    s3 = object_store.get_client()
    for bucket in object_store.site_buckets():
        object_store.delete_objects(bucket, object_store.list_keys(bucket))
        s3.delete_bucket(Bucket=bucket)


def lines(result, status: str) -> dict[str, str]:
    """``{check name: rest of line}`` of the lines with ``status``."""
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith(f"{status} "):
            name, _, rest = line[5:].partition(": ")
            found[name] = rest
    return found


def probe_buckets() -> list[str]:
    names = [b["Name"] for b in
             object_store.get_client().list_buckets()["Buckets"]]
    return [name for name in names if name.startswith(PROBE_PREFIX)]


def test_all_ok_on_a_ready_site(cli, worker, own_buckets, fresh_bucket):
    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    assert summary(result) == f"{COMMAND}: 0 failed"
    assert not lines(result, "FAIL") and not lines(result, "SKIP")
    passed = lines(result, "OK")
    for name in ("configuration", "store credentials",
                 "bucket policy behaviour", "bucket policies", "redis",
                 "worker", "write ckanext.dcor_depot.depots_path",
                 "write users depot", "write figshare depot",
                 "write ckanext.dcor_depot.tmp_dir",
                 "write ckan.storage_path"):
        assert name in passed, result.output
    assert passed["bucket policy behaviour"].startswith(
        "anonymous GET of a tagged object: 200, of an untagged one: 403")
    assert "dcor-normal, dcor-short" in passed["worker"]
    assert any(name.startswith("free space ") for name in passed)
    assert "Traceback" not in result.output
    # the temporary bucket and its objects are gone
    assert probe_buckets() == []


def test_bucket_with_another_policy_fails_until_repaired(
        cli, own_buckets, fresh_bucket):
    other = {"Version": "2012-10-17", "Statement": [{
        "Sid": "EverythingPublic", "Effect": "Allow",
        "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{fresh_bucket}/*"]}]}
    s3 = object_store.get_client()
    s3.put_bucket_policy(Bucket=fresh_bucket, Policy=json.dumps(other))
    s3.put_object(Bucket=fresh_bucket, Key="untagged", Body=b"secret")
    url = object_store.object_url(fresh_bucket, "untagged")
    assert requests.get(url, timeout=30).status_code == 200  # a leak

    result = invoke(cli, COMMAND)
    assert result.exit_code == 1, result.output
    failed = lines(result, "FAIL")
    assert failed["bucket policies"].startswith(
        f"1 buckets have another policy: {fresh_bucket} — fix: run "
        f"`ckan {COMMAND} --repair-policies`")
    assert summary(result).startswith(f"{COMMAND}: ")
    assert summary(result) != f"{COMMAND}: 0 failed"

    repaired = invoke(cli, COMMAND, "--repair-policies")
    assert lines(repaired, "OK")["bucket policies"] == (
        f"replaced the policy of {fresh_bucket}")
    assert requests.get(url, timeout=30).status_code == 403
    again = invoke(cli, COMMAND)
    assert "bucket policies" in lines(again, "OK"), again.output


def test_bucket_without_policy_fails(cli, own_buckets, fresh_bucket):
    object_store.get_client().delete_bucket_policy(Bucket=fresh_bucket)
    result = invoke(cli, COMMAND)
    assert result.exit_code == 1, result.output
    assert fresh_bucket in lines(result, "FAIL")["bucket policies"]


@pytest.mark.ckan_config("ckanext.dcor_depot.depots_path", A_FILE)
@pytest.mark.ckan_config("ckanext.dcor_depot.tmp_dir", f"{A_FILE}/tmp")
def test_depot_path_that_is_a_file_fails(cli, pipeline):
    result = invoke(cli, COMMAND)
    assert result.exit_code == 1, result.output
    failed = lines(result, "FAIL")
    assert failed["write ckanext.dcor_depot.depots_path"].startswith(
        f"{A_FILE} is not a directory — fix: make {A_FILE} a directory")
    assert failed["write users depot"].startswith(
        f"{A_FILE} is not a directory")
    assert failed["write ckanext.dcor_depot.tmp_dir"].startswith(
        f"{A_FILE} is not a directory")
    assert "write ckan.storage_path" in lines(result, "OK")
    assert "Traceback" not in result.output


@pytest.mark.ckan_config("dcor_object_store.secret_access_key",
                         "not-the-secret")
def test_wrong_credentials_fail_with_one_clear_line(cli, pipeline):
    result = invoke(cli, COMMAND)
    assert result.exit_code == 1, result.output
    assert lines(result, "FAIL")["store credentials"].startswith(
        "object store at http://127.0.0.1:7480 rejected the credentials "
        "(SignatureDoesNotMatch)")
    skipped = lines(result, "SKIP")
    assert skipped["bucket policy behaviour"] == (
        "the store cannot be used (see above)")
    assert "bucket policies" in skipped
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_site_without_store_skips_the_store_checks(cli, worker):
    result = invoke(cli, COMMAND)
    assert result.exit_code == 0, result.output
    skipped = lines(result, "SKIP")
    assert set(skipped) == {"store credentials", "bucket policy behaviour",
                            "bucket policies"}
    assert lines(result, "OK")["configuration"] == (
        "consistent, without object store (dcor_object_store.* unset)")


def test_too_little_free_space_fails(cli, pipeline):
    result = invoke(cli, COMMAND, "--min-free", 1e9)
    assert result.exit_code == 1, result.output
    space = [rest for name, rest in lines(result, "FAIL").items()
             if name.startswith("free space ")]
    assert space and all("below 1e+09 GiB — fix: free space" in rest
                         for rest in space)

    bad = invoke(cli, COMMAND, "--min-free", -1)
    assert bad.exit_code == 2
    assert "--min-free must not be negative" in bad.stderr


def test_no_worker_fails(cli, pipeline):
    result = invoke(cli, COMMAND)
    assert result.exit_code == 1, result.output
    assert lines(result, "FAIL")["worker"].startswith(
        "no worker listens on dcor-normal, dcor-short — fix: run "
        "`ckan -c CKAN_INI jobs worker dcor-normal dcor-short`")
