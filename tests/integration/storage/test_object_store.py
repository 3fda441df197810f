"""The object-store layer against the real Ceph RADOS Gateway."""
import json
import uuid

import botocore.exceptions
import pytest
import requests

from ckanext.dcor_depot import config, errors
from ckanext.dcor_depot.storage import cors, lifecycle, object_store
from tests.support.stack import anonymous_get, wait_for


def put(s3_client, bucket, key, data=b"DCOR test data"):
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    return object_store.object_url(bucket, key)


def test_untagged_object_is_private(s3_client, fresh_bucket):
    url = put(s3_client, fresh_bucket, "resource/abc/def/ghi")
    assert anonymous_get(url).status_code == 403


def test_public_tag_opens_and_closes_anonymous_access(s3_client,
                                                      fresh_bucket):
    key = "resource/123/456/789"
    url = put(s3_client, fresh_bucket, key, b"hello world")
    assert object_store.set_public(fresh_bucket, key, True)
    resp = anonymous_get(url)
    assert resp.status_code == 200
    assert resp.content == b"hello world"
    assert object_store.get_tags(fresh_bucket, key) == {"public": "true"}

    assert object_store.set_public(fresh_bucket, key, False)
    assert anonymous_get(url).status_code == 403
    assert object_store.get_tags(fresh_bucket, key) == {}


def test_the_plugin_owns_the_tag_set(s3_client, fresh_bucket):
    """One request per change, no read first: other tags do not survive
    (the plugin owns the tags of its objects)."""
    key = "preview/aaa/bbb/ccc"
    put(s3_client, fresh_bucket, key)
    s3_client.put_object_tagging(Bucket=fresh_bucket, Key=key, Tagging={
        "TagSet": [{"Key": "owner", "Value": "dcor"}]})
    object_store.set_public(fresh_bucket, key, True)
    assert object_store.get_tags(fresh_bucket, key) == {"public": "true"}
    object_store.set_public(fresh_bucket, key, False)
    assert object_store.get_tags(fresh_bucket, key) == {}


def test_tagging_is_idempotent(s3_client, fresh_bucket):
    key = "condensed/111/222/333"
    url = put(s3_client, fresh_bucket, key)
    for _ in range(2):
        assert object_store.set_public(fresh_bucket, key, True)
    assert anonymous_get(url).status_code == 200
    for _ in range(2):
        assert object_store.set_public(fresh_bucket, key, False)
    assert anonymous_get(url).status_code == 403


def test_tagging_a_missing_object_reports_false(fresh_bucket):
    assert object_store.set_public(fresh_bucket, "resource/no/such/key",
                                   True) is False
    assert object_store.get_tags(fresh_bucket, "resource/no/such/key") is None


def test_presigned_url_reads_private_object(s3_client, fresh_bucket):
    key = "resource/pre/sig/ned"
    url = put(s3_client, fresh_bucket, key, b"private bytes")
    assert anonymous_get(url).status_code == 403
    # what a site that hands out signed links to members relies on
    resp = anonymous_get(s3_client.generate_presigned_url(
        "get_object", Params={"Bucket": fresh_bucket, "Key": key},
        ExpiresIn=60))
    assert resp.status_code == 200
    assert resp.content == b"private bytes"


def test_existence(s3_client, fresh_bucket):
    key = "resource/exi/ste/nce"
    assert not object_store.object_exists(fresh_bucket, key)
    put(s3_client, fresh_bucket, key)
    assert object_store.object_exists(fresh_bucket, key)
    assert object_store.head_object(fresh_bucket, key)["ContentLength"] == 14


def test_bucket_is_created_with_policy(s3_client):
    bucket = object_store.bucket_name(str(uuid.uuid4()))
    object_store.ensure_bucket(bucket)
    object_store.ensure_bucket(bucket)  # idempotent
    policy = json.loads(s3_client.get_bucket_policy(Bucket=bucket)["Policy"])
    statement, = policy["Statement"]
    assert statement["Action"] in (["s3:GetObject"], "s3:GetObject")
    assert "s3:ExistingObjectTag/public" in json.dumps(statement["Condition"])


def test_bucket_name_and_url_follow_config(with_plugins):
    assert object_store.bucket_name("org-1") == "test-circle-org-1"
    assert object_store.object_url("b", "resource/a/b/c").endswith(
        ":7480/b/resource/a/b/c")


@pytest.mark.ckan_config("dcor_object_store.endpoint_url",
                         "http://127.0.0.1:9")
def test_unreachable_store_gives_clear_error(with_plugins):
    object_store._known_buckets.clear()
    with pytest.raises(errors.StoreError,
                       match="127.0.0.1:9 is unreachable"):
        object_store.ensure_bucket("test-circle-unreachable")


@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "wrong")
def test_wrong_credentials_give_clear_error(with_plugins):
    with pytest.raises(errors.StoreError,
                       match="rejected the credentials"):
        object_store.check_connection()


@pytest.mark.ckan_config("dcor_object_store.access_key_id", "")
@pytest.mark.ckan_config("dcor_object_store.secret_access_key", "")
def test_s3_off_without_credentials(with_plugins):
    with pytest.raises(errors.StoreError) as info:
        object_store.get_client()
    assert info.value.code == errors.NOT_CONFIGURED


def lifecycle_rules(s3_client, bucket) -> list[dict]:
    return s3_client.get_bucket_lifecycle_configuration(
        Bucket=bucket)["Rules"]


def test_buckets_abort_incomplete_uploads_themselves(s3_client,
                                                     fresh_bucket):
    rule, = [r for r in lifecycle_rules(s3_client, fresh_bucket)
             if r["ID"] == lifecycle.RULE_ID]
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": lifecycle.ABORT_INCOMPLETE_AFTER_DAYS}


def test_an_operators_lifecycle_rules_are_kept(s3_client, fresh_bucket):
    operator_rule = {"ID": "expire-scratch", "Status": "Enabled",
                     "Filter": {"Prefix": "scratch/"},
                     "Expiration": {"Days": 30}}
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=fresh_bucket,
        LifecycleConfiguration={"Rules": [operator_rule]})
    object_store._known_buckets.discard(fresh_bucket)
    object_store.ensure_bucket(fresh_bucket)
    object_store._known_buckets.discard(fresh_bucket)
    object_store.ensure_bucket(fresh_bucket)  # twice: no duplicate
    rules = {r["ID"]: r for r in lifecycle_rules(s3_client, fresh_bucket)}
    assert set(rules) == {"expire-scratch", lifecycle.RULE_ID}
    assert rules["expire-scratch"]["Expiration"] == {"Days": 30}


def leave_lifecycle_rules_to(s3_client, keep: str) -> None:
    """Remove the lifecycle rules of the test site's other buckets.

    Every lifecycle day, the gateway's worker goes through all buckets
    with rules and starts over when the next day begins; with a day of
    30 s, the hundreds of buckets earlier tests left behind would starve
    the one under test (Ceph Pacific has no per-bucket ``lc process``).
    """
    ours = object_store.bucket_regex()
    for bucket in s3_client.list_buckets()["Buckets"]:
        if bucket["Name"] != keep and ours.match(bucket["Name"]):
            s3_client.delete_bucket_lifecycle(Bucket=bucket["Name"])


# 30-60 s waiting for the gateway's lifecycle day: `make test-slow`.
@pytest.mark.slow
def test_the_rule_aborts_a_forgotten_upload(s3_client, fresh_bucket,
                                            monkeypatch):
    # The devstack's gateway counts a lifecycle day as 30 seconds
    # (rgw_lc_debug_interval, stack/ceph.sh) and its own lifecycle worker
    # runs every such day; the plugin's rule, with one day instead of
    # five, then acts within a minute or two.
    leave_lifecycle_rules_to(s3_client, fresh_bucket)
    monkeypatch.setattr(lifecycle, "ABORT_INCOMPLETE_AFTER_DAYS", 1)
    lifecycle.ensure_rule(s3_client, fresh_bucket)
    key = "resource/for/got/ten"
    upload = s3_client.create_multipart_upload(Bucket=fresh_bucket, Key=key)
    s3_client.upload_part(Bucket=fresh_bucket, Key=key,
                          UploadId=upload["UploadId"], PartNumber=1,
                          Body=b"a part nobody completes")

    def gone() -> bool:
        return not s3_client.list_multipart_uploads(
            Bucket=fresh_bucket).get("Uploads")
    wait_for(gone, timeout=240, interval=5,
             what="the lifecycle rule to abort the upload")
    # RGW answers NoSuchKey where AWS says NoSuchUpload.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3_client.list_parts(Bucket=fresh_bucket, Key=key,
                             UploadId=upload["UploadId"])
    assert object_store.error_code(refused.value) in {"NoSuchUpload",
                                                      "NoSuchKey"}


def cors_rules(s3_client, bucket) -> dict[str | None, dict]:
    return {r.get("ID"): r for r in s3_client.get_bucket_cors(
        Bucket=bucket)["CORSRules"]}


def preflight(url: str, origin: str) -> requests.Response:
    """What a browser asks before it PUTs a part from a page of
    ``origin``."""
    return requests.options(url, timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})


def test_buckets_let_the_sites_pages_send_parts(s3_client, fresh_bucket):
    site = config.site_origin()
    assert site == "http://test.ckan.net"  # ckan.site_url of the tests
    rule = cors_rules(s3_client, fresh_bucket)[cors.RULE_ID]
    assert rule["AllowedOrigins"] == [site]
    assert set(rule["AllowedMethods"]) == {"PUT", "GET", "HEAD"}
    assert rule["ExposeHeaders"] == ["ETag"]

    url = object_store.object_url(fresh_bucket, "resource/abc/def/ghi")
    reply = preflight(f"{url}?partNumber=1&uploadId=x", site)
    assert reply.status_code == 200
    assert reply.headers["Access-Control-Allow-Origin"] == site
    assert "PUT" in reply.headers["Access-Control-Allow-Methods"]
    assert "ETag" in reply.headers["Access-Control-Expose-Headers"]
    foreign = preflight(url, "https://elsewhere.example")
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_an_operators_cors_rules_are_kept(s3_client, fresh_bucket):
    operator_rule = {"ID": "operator-downloads",
                     "AllowedOrigins": ["https://viewer.example"],
                     "AllowedMethods": ["GET"]}
    stale = cors.site_rule("https://old-name.example")
    s3_client.put_bucket_cors(Bucket=fresh_bucket, CORSConfiguration={
        "CORSRules": [operator_rule, stale]})
    for _ in range(2):  # twice: no duplicate
        object_store._known_buckets.discard(fresh_bucket)
        object_store.ensure_bucket(fresh_bucket)
    rules = cors_rules(s3_client, fresh_bucket)
    assert set(rules) == {"operator-downloads", cors.RULE_ID}
    assert rules["operator-downloads"]["AllowedOrigins"] \
        == ["https://viewer.example"]
    # the plugin's rule follows ckan.site_url
    assert rules[cors.RULE_ID]["AllowedOrigins"] == ["http://test.ckan.net"]
    assert preflight(object_store.object_url(fresh_bucket, "k"),
                     "https://old-name.example").headers.get(
        "Access-Control-Allow-Origin") is None
