"""A seeded random walk of everything that changes visibility, over HTTP.

After at least 200 operations by ordinary users, sysadmins and anonymous
clients (creating, uploading, publishing, hiding, drafting, deleting,
purging, bulk actions, organization deletion, migration runs, jobs run
at random moments), every object in the store answers an anonymous GET
exactly as the database says: 200 for active resources of active public
datasets of the bucket's organization, 403 for everything else.

Replay a failure with ``DCOR_PROPERTY_SEED=<seed printed> make test
PYTEST_ARGS="-k property"``.
"""
from __future__ import annotations

import os
import random

from ckan import model

from ckanext.dcor_depot.operations import migrate
from ckanext.dcor_depot.records import inventory
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import (
    Org,
    anon_status,
    dataset,
    organization,
    person,
    upload,
)
from tests.support.cli import bucket_keys
from tests.support.stack import run_jobs

OPERATIONS = 220


class Walk:
    def __init__(self, site, rng: random.Random) -> None:
        self.site = site
        self.rng = rng
        self.orgs = [organization(), organization(), organization()]
        self.deleted_orgs: set[str] = set()
        self.sysadmin = person(sysadmin=True)
        self.outsider = person()
        self.datasets: dict[str, Org] = {}  # id -> organization at creation
        self.resources: list[tuple[str, str]] = []  # (dataset id, rid)
        self.log: list[str] = []

    # -- helpers
    def live_orgs(self) -> list[Org]:
        return [o for o in self.orgs if o.id not in self.deleted_orgs]

    def some_dataset(self) -> tuple[str, Org] | None:
        if not self.datasets:
            return None
        dataset_id = self.rng.choice(sorted(self.datasets))
        return dataset_id, self.datasets[dataset_id]

    def call(self, action: str, token: str | None, **data) -> int:
        status = self.site.status(action, token, **data)
        self.log.append(f"{action} {data} -> {status}")
        return status

    # -- operations
    def create(self) -> None:
        orgs = self.live_orgs()
        if not orgs or len(self.datasets) >= 12:
            return self.upload()
        org = self.rng.choice(orgs)
        ds = dataset(self.site, org, private=self.rng.random() < 0.5)
        self.datasets[ds["id"]] = org
        self.log.append(f"create {ds['id']} in {org.name}")

    def upload(self) -> None:
        picked = self.some_dataset()
        if picked is None:
            return self.create()
        dataset_id, org = picked
        try:
            res = upload(self.site, org.editor, dataset_id,
                         self.rng.randbytes(64))
        except Exception as exc:  # deleted/purged/moved: refused is fine
            self.log.append(f"upload to {dataset_id} refused: {exc}")
            return
        self.resources.append((dataset_id, res["id"]))
        if self.rng.random() < 0.3:
            # An ancillary artifact next to the upload, as other DCOR
            # plugins write them; the migrate command stores it.
            layout.artifact_local_path(res["id"], "condensed").write_bytes(
                self.rng.randbytes(32))
        self.log.append(f"upload {res['id']} to {dataset_id}")

    def patch(self, **fields) -> None:
        picked = self.some_dataset()
        if picked:
            self.call("package_patch", picked[1].editor.token,
                      id=picked[0], **fields)

    def delete_dataset(self) -> None:
        picked = self.some_dataset()
        if picked:
            self.call("package_delete", picked[1].editor.token, id=picked[0])

    def purge(self) -> None:
        picked = self.some_dataset()
        if picked and self.rng.random() < 0.5:
            self.call("dataset_purge", self.sysadmin.token, id=picked[0])
            del self.datasets[picked[0]]

    def delete_resource(self) -> None:
        if self.resources:
            dataset_id, rid = self.rng.choice(self.resources)
            org = self.datasets.get(dataset_id)
            if org:
                self.call("resource_delete", org.editor.token, id=rid)

    def bulk(self) -> None:
        orgs = self.live_orgs()
        if not orgs:
            return
        org = self.rng.choice(orgs)
        action = self.rng.choice(["bulk_update_private", "bulk_update_public",
                                  "bulk_update_delete"])
        ids = self.rng.sample(sorted(self.datasets),
                              min(3, len(self.datasets)))
        # Other organizations' datasets in the list must be left alone.
        self.call(action, org.admin.token, org_id=org.id, datasets=ids)

    def hostile(self) -> None:
        picked = self.some_dataset()
        if not picked or picked[1].id in self.deleted_orgs:
            # A deleted organization leaves its datasets unowned, which
            # the live site lets any user edit (create_unowned_dataset).
            return
        token = self.rng.choice([None, self.outsider.token,
                                 picked[1].member.token])
        action = self.rng.choice(["package_delete", "dataset_purge",
                                  "package_patch"])
        extra = {"private": False} if action == "package_patch" else {}
        status = self.call(action, token, id=picked[0], **extra)
        assert status == 403, self.log[-1]

    def delete_organization(self) -> None:
        org = self.orgs[2]
        if org.id not in self.deleted_orgs and self.rng.random() < 0.3:
            self.call("organization_delete", org.admin.token, id=org.id)
            self.deleted_orgs.add(org.id)

    def migrate(self) -> None:
        model.Session.remove()
        migrate.migrate_resources(
            inventory.resource_records(), migrate.MigrationOptions(),
            on_result=lambda outcome: None, jobs=4)
        self.log.append("migrate")

    def jobs(self) -> None:
        run_jobs()
        self.log.append("jobs")

    def step(self) -> None:
        operations = [
            (self.create, 8), (self.upload, 18),
            (lambda: self.patch(private=False), 12),
            (lambda: self.patch(private=True), 10),
            (lambda: self.patch(state="draft"), 4),
            (lambda: self.patch(state="active"), 5),
            (self.delete_dataset, 3), (self.purge, 2),
            (self.delete_resource, 4), (self.bulk, 6), (self.hostile, 5),
            (self.delete_organization, 1), (self.migrate, 2),
            (self.jobs, 10),
        ]
        funcs, weights = zip(*operations, strict=True)
        self.rng.choices(funcs, weights)[0]()


def expected_status(org_id: str, key: str) -> int:
    """200 exactly for active resources of active public datasets that
    this organization owns; 403 for everything else."""
    rid = "".join(key.split("/")[1:])
    res = model.Resource.get(rid)
    pkg = model.Package.get(res.package_id) if res is not None else None
    public = (res is not None and res.state == "active" and pkg is not None
              and pkg.state == "active" and not pkg.private
              and pkg.owner_org == org_id)
    return 200 if public else 403


def test_property_random_operations_leave_every_object_as_the_db_says(
        site, capsys):
    seed = int(os.environ.get("DCOR_PROPERTY_SEED")
               or random.SystemRandom().randrange(2**32))
    with capsys.disabled():
        print(f"\n[property] seed {seed} (DCOR_PROPERTY_SEED={seed} to "
              "replay)")
    walk = Walk(site, random.Random(seed))
    for _ in range(OPERATIONS):
        walk.step()
    run_jobs()  # drain the queues, as the workers would
    model.Session.remove()
    checked = 0
    wrong = []
    for org in walk.orgs:
        for key in bucket_keys(org.bucket):
            url = object_store.object_url(org.bucket, key)
            want = expected_status(org.id, key)
            got = anon_status(url)
            checked += 1
            if got != want:
                wrong.append(f"{org.bucket}:{key} anonymous {got}, "
                             f"database says {want}")
    assert checked >= 10, f"seed {seed}: too few objects to judge"
    assert not wrong, (f"seed {seed}: " + "; ".join(wrong)
                       + "\nlast operations:\n" + "\n".join(walk.log[-30:]))
