"""The one translation of boto errors into the plugin's errors.

The botocore exceptions are built by hand, as botocore builds them from
the store's answers; no store is involved.
"""
from __future__ import annotations

import botocore.exceptions
import pytest

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import object_store, presigned
from tests.support.store import ENDPOINT


def client_error(code: str | None, message: str = "",
                 operation: str = "HeadObject"
                 ) -> botocore.exceptions.ClientError:
    error = {"Message": message}
    if code is not None:
        error["Code"] = code
    return botocore.exceptions.ClientError({"Error": error}, operation)


def unreachable() -> botocore.exceptions.EndpointConnectionError:
    return botocore.exceptions.EndpointConnectionError(
        endpoint_url=ENDPOINT)


def test_error_code_of_a_refused_request():
    assert object_store.error_code(client_error("NoSuchKey")) == "NoSuchKey"


def test_no_error_code_without_an_answer():
    assert object_store.error_code(unreachable()) is None
    assert object_store.error_code(ValueError("x")) is None
    assert object_store.error_code(client_error(None)) is None


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NoSuchBucket",
                                  "NotFound", "NoSuchTagSet", "NoSuchUpload"])
def test_not_found_codes(s3_settings, code):
    assert object_store.is_not_found(client_error(code))
    error = object_store.store_error(client_error(code))
    assert type(error) is errors.NotFound
    assert error.code == code


def test_not_found_is_decided_by_the_code_not_the_message():
    assert not object_store.is_not_found(
        client_error("AccessDenied", "NoSuchKey: not found"))
    assert not object_store.is_not_found(unreachable())


def test_refused_request(s3_settings):
    error = object_store.store_error(client_error("AccessDenied",
                                                  "Access Denied"))
    assert type(error) is errors.StoreError
    assert error.code == "AccessDenied"
    assert str(error) == ("object store refused the request: AccessDenied "
                          "Access Denied")


def test_no_code_without_an_answer(s3_settings):
    error = object_store.store_error(unreachable())
    assert type(error) is errors.StoreError
    assert error.code is None


def test_conflicts_are_no_busy(s3_settings):
    # Busy is the plugin's (a claim, a lock), never the store's answer.
    error = object_store.store_error(client_error("OperationAborted"))
    assert type(error) is errors.StoreError
    assert error.code == "OperationAborted"


def test_context_leads_the_message(s3_settings):
    error = object_store.store_error(client_error("AccessDenied"),
                                     "cannot read s3://b/k")
    assert str(error) == ("cannot read s3://b/k: object store refused the "
                          "request: AccessDenied")


def test_request_without_code(s3_settings):
    assert str(object_store.store_error(client_error(None, "odd"))) == (
        "object store refused the request: ? odd")


@pytest.mark.parametrize("code", ["InvalidAccessKeyId",
                                  "SignatureDoesNotMatch"])
def test_rejected_credentials(s3_settings, code):
    message = str(object_store.store_error(client_error(code)))
    assert message.startswith(f"object store at {ENDPOINT} rejected the "
                              f"credentials ({code})")
    assert "dcor_object_store.access_key_id" in message


def test_replaced_object(s3_settings):
    error = client_error("PreconditionFailed", operation="GetObject")
    assert str(object_store.store_error(error)) == (
        "the object was replaced while it was being read")


def test_unreachable_store(s3_settings):
    assert str(object_store.store_error(unreachable())) == (
        f"object store at {ENDPOINT} is unreachable")


@pytest.mark.parametrize("kind", [
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
])
def test_timeouts(s3_settings, kind):
    assert str(object_store.store_error(kind(endpoint_url=ENDPOINT))) == (
        f"object store at {ENDPOINT} timed out")


def test_other_client_failures(s3_settings):
    exc = botocore.exceptions.NoCredentialsError()
    assert str(object_store.store_error(exc)) == (
        f"object store error: {exc}")


def test_store_errors_keep_their_class_and_code():
    original = errors.NotFound("no such upload", code="NoSuchUpload")
    error = object_store.store_error(original, "resource r1")
    assert type(error) is errors.NotFound
    assert error.code == "NoSuchUpload"
    assert str(error) == "resource r1: no such upload"


def test_translated_block_raises_store_errors(s3_settings):
    cause = client_error("AccessDenied")
    with pytest.raises(errors.StoreError) as info:
        with object_store.translated("cannot list"):
            raise cause
    assert str(info.value) == ("cannot list: object store refused the "
                               "request: AccessDenied")
    assert info.value.__cause__ is cause


def test_translated_block_lets_other_errors_pass():
    original = errors.StoreError("as it was", code=errors.MISMATCH)
    with pytest.raises(errors.StoreError) as info:
        with object_store.translated("cannot list"):
            raise original
    assert info.value is original
    with pytest.raises(KeyError):
        with object_store.translated():
            raise KeyError("k")


def test_translated_functions(s3_settings):
    @object_store.translate_errors
    def refused(bucket: str) -> str:
        raise client_error("NoSuchBucket", operation="ListObjectsV2")

    with pytest.raises(errors.NotFound,
                       match="refused the request: NoSuchBucket"):
        refused("b")
    assert refused.__name__ == "refused"


def test_leading_block_leads_store_errors_too(s3_settings):
    with pytest.raises(errors.StoreError) as info:
        with object_store.leading("bucket b"):
            raise errors.StoreError("as it was", code=errors.MISMATCH)
    assert str(info.value) == "bucket b: as it was"
    assert info.value.code == errors.MISMATCH
    with pytest.raises(errors.NotFound, match="^bucket b: object store"):
        with object_store.leading("bucket b"):
            raise client_error("NoSuchBucket")
    with pytest.raises(KeyError):
        with object_store.leading("bucket b"):
            raise KeyError("k")


class _Client:
    """A stand-in for the boto client: each method raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def list_parts(self, **kwargs):
        raise self.error

    def abort_multipart_upload(self, **kwargs):
        raise self.error


@pytest.mark.parametrize("code", ["NoSuchUpload", "NoSuchKey"])
def test_a_gone_upload_is_not_found(s3_settings, monkeypatch, code):
    monkeypatch.setattr(object_store, "get_client",
                        lambda: _Client(client_error(code)))
    with pytest.raises(errors.NotFound) as info:
        presigned.stored_parts("b", "k", "u")
    assert info.value.code == "NoSuchUpload"
    assert str(info.value) == ("the upload of k no longer exists "
                               "(completed, aborted or expired)")
    assert presigned.abort("b", "k", "u") is False


def test_other_upload_failures_say_what_the_store_answered(s3_settings,
                                                           monkeypatch):
    monkeypatch.setattr(object_store, "get_client",
                        lambda: _Client(client_error("AccessDenied")))
    with pytest.raises(errors.StoreError) as info:
        presigned.stored_parts("b", "k", "u")
    assert str(info.value) == ("cannot list the parts of k: object store "
                               "refused the request: AccessDenied")
    with pytest.raises(errors.StoreError) as info:
        presigned.abort("b", "k", "u")
    assert str(info.value) == ("object store refused the request: "
                               "AccessDenied")
    assert type(info.value) is errors.StoreError
