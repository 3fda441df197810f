"""The resource id of ``append-resource`` (upstream's formula)."""
from __future__ import annotations

import hashlib

from ckanext.dcor_depot.operations import append

DATASET = "89bf2177-ffeb-9893-83cc-b619fc2f6663"
SHA256_HELLO = hashlib.sha256(b"hello").hexdigest()


def test_resource_id_is_md5_of_dataset_name_and_sha256():
    rid = append.resource_id_for(DATASET, "M001_data.rtdc", SHA256_HELLO)

    h = hashlib.md5((DATASET + "M001_data.rtdc" + SHA256_HELLO).encode()
                    ).hexdigest()
    assert rid == f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    # computed with upstream 0.14.1's make_id
    assert rid == "9b068362-5d0a-92d7-6786-4269b78eb8cd"


def test_name_and_content_both_count():
    rid = append.resource_id_for(DATASET, "a.rtdc", SHA256_HELLO)
    assert append.resource_id_for(DATASET, "b.rtdc", SHA256_HELLO) != rid
    other = hashlib.sha256(b"other").hexdigest()
    assert append.resource_id_for(DATASET, "a.rtdc", other) != rid
