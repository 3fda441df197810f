"""Helpers for the command tests: invoke ``ckan COMMAND`` in-process."""
from __future__ import annotations

import inspect
from typing import Any

import ckan.model as model
from ckan.tests import helpers
from click.testing import CliRunner

from ckanext.dcor_depot.storage import layout, object_store


def invoke(cli, *args: Any, **kwargs: Any):
    """Run ``ckan ARGS...`` through CKAN's click runner.

    stdout and stderr are kept apart: click 8.2+ (CKAN 2.12) does that
    always, click 8.1 (CKAN 2.11) only when asked.
    """
    from ckan.cli.cli import ckan
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        cli = type(cli)(env=cli.env, mix_stderr=False)
    return cli.invoke(ckan, [str(a) for a in args], **kwargs)


def summary(result) -> str:
    """The command's last stdout line (its summary)."""
    return result.stdout.strip().splitlines()[-1]


def dataset_resources(dataset_id: str) -> list[dict[str, Any]]:
    model.Session.remove()
    return helpers.call_action("package_show", id=dataset_id)["resources"]


def bucket_of(owner: dict[str, Any]) -> str:
    return object_store.bucket_name(owner["org"]["id"])


def object_bytes(bucket: str, key: str) -> bytes | None:
    """The stored bytes, or None when there is no such object."""
    if object_store.head_object(bucket, key) is None:
        return None
    return object_store.get_client().get_object(
        Bucket=bucket, Key=key)["Body"].read()


def resource_object(owner: dict[str, Any], rid: str,
                    artifact: str = "resource") -> bytes | None:
    return object_bytes(bucket_of(owner), layout.object_key(rid, artifact))


def bucket_keys(bucket: str) -> list[str]:
    """Keys in a bucket ([] when the bucket does not exist)."""
    s3 = object_store.get_client()
    try:
        resp = s3.list_objects_v2(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        return []
    return sorted(obj["Key"] for obj in resp.get("Contents", []))
