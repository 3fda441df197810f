"""The policy comparison of ``dcor-depot-check`` (no store)."""
from __future__ import annotations

from ckanext.dcor_depot.storage import policy_check


def test_policies_equal_up_to_one_element_lists():
    ours = {"Statement": [{"Principal": {"AWS": ["*"]},
                           "Action": ["s3:GetObject"]}]}
    normalized_by_store = {"Statement": {"Principal": {"AWS": "*"},
                                         "Action": "s3:GetObject"}}
    other = {"Statement": [{"Principal": {"AWS": ["*"]},
                            "Action": ["s3:GetObject", "s3:ListBucket"]}]}
    normalized = policy_check.normalized
    assert normalized(ours) == normalized(normalized_by_store)
    assert normalized(ours) != normalized(other)
    assert normalized(None) != normalized(ours)
