"""Listing commands: resources of the site, objects of a dataset."""
from __future__ import annotations

import ckan.plugins.toolkit as tk
import click

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.cli import common
from ckanext.dcor_depot.records import ckan_data, inventory
from ckanext.dcor_depot.storage import layout, object_store

LIST_S3 = "dcor-list-s3-objects-for-dataset"
LIST_RESOURCES = "list-all-resources"


@click.command(LIST_S3, short_help="List the S3 objects of a dataset.")
@click.argument("dataset_id")
@common.with_app_context
def list_s3_objects_for_dataset(dataset_id: str) -> None:
    """Print ``bucket:key (tags)`` of every artifact of DATASET_ID.

    Green: public, blue: private, red: not found. DATASET_ID may be the id
    or the name; drafts and private datasets are listed too.
    """
    common.require_s3(LIST_S3)
    try:
        dataset = ckan_data.package_show(dataset_id)
    except tk.ObjectNotFound:
        common.fail(f"{LIST_S3}: there is no dataset {dataset_id!r}")
    if not dataset.get("owner_org"):
        common.fail(f"{LIST_S3}: dataset {dataset['name']} has no "
                    "organization, so it has no bucket")
    bucket = object_store.bucket_name(dataset["owner_org"])
    tally = common.Tally(LIST_S3, "public", "private", "not found")
    for record in inventory.resource_records(dataset_id=dataset["id"]):
        for artifact in layout.ARTIFACTS:
            key = layout.object_key(record.id, artifact)
            try:
                tags = object_store.get_tags(bucket, key)
            except errors.StoreError as exc:
                tally.add("failed")
                common.report_error(f"{bucket}:{key} ({exc})")
                continue
            if tags is None:
                tally.add("not found")
                click.secho(f"{bucket}:{key} (not found)", fg="red")
                continue
            public = tags.get(object_store.PUBLIC_TAG) == "true"
            tally.add("public" if public else "private")
            text = ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
            click.secho(f"{bucket}:{key} ({text or 'no tags'})",
                        fg="green" if public else "blue")
    tally.finish()


@click.command(LIST_RESOURCES, short_help="Print every resource id.")
@common.with_app_context
def list_all_resources() -> None:
    """Print the id of every resource, public, private and in drafts.

    One id per line on stdout; the count goes to stderr, so the output
    can be piped into other commands.
    """
    ids = inventory.resource_ids()
    for rid in ids:
        click.echo(rid)
    click.echo(f"{LIST_RESOURCES}: {len(ids)} resources", err=True)
