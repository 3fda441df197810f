"""Resources from block storage into the object store, verified.

- :mod:`.plan`: options, skip reasons and what to do per resource;
- :mod:`.run`: the upload job of one resource
  (:func:`migrate_resource_to_s3`), the transfers of artifacts and the
  bulk engine of ``dcor-migrate-resources-to-object-store``
  (:func:`migrate_resources`);
- :mod:`.record`: outcomes and their record in CKAN (batched revisions,
  object tags, one search-index update per dataset).
"""
from ckanext.dcor_depot.operations.migrate.plan import (
    MigrationOptions,
    SkipReason,
)
from ckanext.dcor_depot.operations.migrate.record import (
    ArtifactOutcome,
    ResourceOutcome,
    Status,
)
from ckanext.dcor_depot.operations.migrate.run import (
    delete_local_file,
    migrate_resource_to_s3,
    migrate_resources,
)

__all__ = [
    "ArtifactOutcome",
    "MigrationOptions",
    "ResourceOutcome",
    "SkipReason",
    "Status",
    "delete_local_file",
    "migrate_resource_to_s3",
    "migrate_resources",
]
