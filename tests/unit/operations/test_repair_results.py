"""How the audit's ``--fix`` counts what each repair returned (no site)."""
from __future__ import annotations

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.audit import repair
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind

FINDING = Finding(Kind.SHA256_MISSING, resource="r1")


def attempt(func):
    outcome = repair.RepairOutcome()
    told = []
    repair._attempt(outcome, FINDING, func,
                    lambda finding, status, why: told.append((status, why)))
    return outcome, told


def test_fixed():
    outcome, told = attempt(lambda finding: None)
    assert outcome.fixed == [FINDING]
    assert told == [(repair.RepairStatus.FIXED, "")]


def test_queued_is_neither_fixed_nor_failed():
    outcome, told = attempt(
        lambda finding: (repair.RepairStatus.QUEUED, "the move job j"))
    assert outcome.queued == [FINDING]
    assert not outcome.fixed and not outcome.failed
    assert told == [(repair.RepairStatus.QUEUED, "the move job j")]


def test_not_fixed_says_why():
    outcome, told = attempt(lambda finding: repair._not_fixed(finding, "x"))
    assert outcome.failed == [(FINDING, "x")]
    assert told == [(repair.RepairStatus.FAILED, "x")]


def test_a_failing_repair_is_reported_with_its_message():
    def failing(finding):
        raise errors.StoreError("bucket b: object store refused the "
                                "request: AccessDenied", code="AccessDenied")

    outcome, told = attempt(failing)
    why = "bucket b: object store refused the request: AccessDenied"
    assert outcome.failed == [(FINDING, why)]
    assert told == [(repair.RepairStatus.FAILED, why)]
