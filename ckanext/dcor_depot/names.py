"""Names the plugin shares with CKAN, RQ and its operators, defined once.

Queue names, url types, organizations whose data are placed by hand and
the resource fields the plugin owns are interface: workers listen on the
queues, resources carry the url types, operators name the
organizations.
"""
from __future__ import annotations

#: RQ queue of short jobs (the depot symlink, visibility syncs).
QUEUE_SHORT = "dcor-short"
#: RQ queue of jobs that move data (store uploads, backups, moves, SHA256,
#: search-index updates).
QUEUE_NORMAL = "dcor-normal"
#: The plugin's own queues (its workers must listen on both).
PLUGIN_QUEUES = (QUEUE_NORMAL, QUEUE_SHORT)
#: Every queue the plugin's jobs use, CKAN's own included.
QUEUES = ("default", QUEUE_SHORT, QUEUE_NORMAL)

#: url_type of a file uploaded through CKAN.
URL_TYPE_UPLOAD = "upload"
#: url_type of a file uploaded straight to the store (direct uploads).
URL_TYPE_S3_UPLOAD = "s3_upload"
#: url types of resources whose data the plugin keeps.
FILE_URL_TYPES = (URL_TYPE_UPLOAD, URL_TYPE_S3_UPLOAD)

#: The organization of the figshare mirror.
FIGSHARE_ORGANIZATION = "figshare-import"
#: Organizations whose data are placed in depots by hand: never moved into
#: the user depot.
HAND_MANAGED_ORGANIZATIONS = (FIGSHARE_ORGANIZATION, "internal-guck")

#: Resource fields only the plugin (or, on existing resources, a sysadmin)
#: writes.
OWNED_FIELDS = ("s3_available", "s3_url", "sha256", "s3_moved_from",
                "s3_verified_at", "etag")
