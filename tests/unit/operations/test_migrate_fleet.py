"""How ``--via-workers`` cuts a migration into jobs (no services)."""
from __future__ import annotations

from ckanext.dcor_depot.operations.migrate import fleet
from ckanext.dcor_depot.operations.migrate.plan import MigrationOptions
from ckanext.dcor_depot.records.inventory import ResourceRecord


def record(rid: str, org: str | None = "org-a") -> ResourceRecord:
    return ResourceRecord(id=rid, name=rid, dataset_id="d", dataset_name="d",
                          owner_org=org, url_type="upload",
                          s3_available=False, s3_url=None, sha256=None)


def test_a_job_holds_one_bucket_in_key_order():
    records = [record("r3", "org-b"), record("r2"), record("r1", "org-b")]
    cut = list(fleet.batches(records, size_of=lambda rid: 1))
    assert [[r.id for r in batch] for batch in cut] == [["r2"], ["r1", "r3"]]


def test_small_files_share_a_job_up_to_its_count():
    records = [record(f"r{n:03d}") for n in range(fleet.BATCH_RESOURCES + 1)]
    cut = list(fleet.batches(records, size_of=lambda rid: 1000))
    assert [len(batch) for batch in cut] == [fleet.BATCH_RESOURCES, 1]


def test_large_files_fill_a_job_by_bytes_and_a_huge_one_is_alone():
    third = fleet.BATCH_BYTES * 4 // 10
    sizes = {"r1": third, "r2": third, "r3": third,
             "r4": 10 * fleet.BATCH_BYTES, "r5": 1}
    cut = list(fleet.batches([record(rid) for rid in sizes],
                             size_of=sizes.__getitem__))
    assert [[r.id for r in batch] for batch in cut] == [
        ["r1", "r2"], ["r3"], ["r4"], ["r5"]]


def test_job_ids_derive_from_the_resources_and_the_options():
    plain = MigrationOptions()
    deleting = MigrationOptions(delete_local=True)
    assert fleet.batch_job_id(plain, ["a"]) == "dcor-migrate-plain-a"
    assert fleet.batch_job_id(plain, ["a", "b"]) == \
        fleet.batch_job_id(plain, ["b", "a"])
    assert fleet.batch_job_id(plain, ["a", "b"]) != \
        fleet.batch_job_id(deleting, ["a", "b"])
    assert fleet.signature(MigrationOptions(verify_existence=True,
                                            verify_checksum=True)) == "ec"
