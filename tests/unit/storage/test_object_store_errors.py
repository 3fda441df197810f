"""The one translation of boto errors into the plugin's errors.

The botocore exceptions are built by hand, as botocore builds them from
the store's answers; no store is involved.
"""
from __future__ import annotations

import botocore.exceptions
import pytest

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.storage import object_store, transfer
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
                                  "NotFound", "NoSuchTagSet"])
def test_not_found_codes(code):
    assert object_store.is_not_found(client_error(code))


def test_not_found_is_decided_by_the_code_not_the_message():
    assert not object_store.is_not_found(
        client_error("AccessDenied", "NoSuchKey: not found"))
    assert not object_store.is_not_found(unreachable())


def test_refused_request(s3_settings):
    error = object_store.store_error(client_error("AccessDenied",
                                                  "Access Denied"))
    assert type(error) is object_store.ObjectStoreError
    assert str(error) == ("object store refused the request: AccessDenied "
                          "Access Denied")


def test_object_store_error_is_the_store_error():
    assert object_store.ObjectStoreError is errors.StoreError


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


def test_store_errors_keep_their_class():
    original = transfer.VerificationError("copy does not match")
    error = object_store.store_error(original, "resource r1")
    assert type(error) is transfer.VerificationError
    assert str(error) == "resource r1: copy does not match"


def test_translated_block_raises_store_errors(s3_settings):
    cause = client_error("AccessDenied")
    with pytest.raises(object_store.ObjectStoreError) as info:
        with object_store.translated("cannot list"):
            raise cause
    assert str(info.value) == ("cannot list: object store refused the "
                               "request: AccessDenied")
    assert info.value.__cause__ is cause


def test_translated_block_lets_other_errors_pass():
    original = transfer.VerificationError("as it was")
    with pytest.raises(transfer.VerificationError) as info:
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

    with pytest.raises(object_store.ObjectStoreError,
                       match="refused the request: NoSuchBucket"):
        refused("b")
    assert refused.__name__ == "refused"
