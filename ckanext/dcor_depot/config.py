"""Typed access to this plugin's options (declared in config_declaration.yaml).

CKAN fills in defaults and converts values on start-up, so the getters here
only resolve the few defaults that depend on the machine.
"""
from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import ckan.plugins.toolkit as tk
from ckan.exceptions import CkanConfigurationException

PACKAGE_DIR = Path(__file__).resolve().parent


def depots_path() -> Path:
    return Path(tk.config["ckanext.dcor_depot.depots_path"])


def users_depot_name() -> str:
    return (tk.config["ckanext.dcor_depot.users_depot_name"]
            or f"users-{socket.gethostname()}")


def users_depot_path() -> Path:
    return depots_path() / users_depot_name()


def figshare_depot_path() -> Path:
    return depots_path() / "figshare"


def tmp_dir() -> Path:
    return Path(tk.config["ckanext.dcor_depot.tmp_dir"]
                or tempfile.gettempdir())


def figshare_api_url() -> str:
    return tk.config["ckanext.dcor_depot.figshare_api_url"].rstrip("/")


def figshare_dois_path() -> Path:
    return Path(tk.config["ckanext.dcor_depot.figshare_dois_path"]
                or PACKAGE_DIR / "figshare_dois.txt")


def storage_path() -> Path:
    """CKAN's own upload root (``ckan.storage_path``)."""
    value = tk.config.get("ckan.storage_path")
    if not value:
        raise CkanConfigurationException(
            "ckan.storage_path is empty: set it to CKAN's upload folder")
    return Path(value)


def origin_of(url: str) -> str | None:
    """The web origin (``scheme://host[:port]``) of ``url`` as browsers
    send it in ``Origin`` (default ports left out); None if ``url`` has
    no scheme or host."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a port number
        return None
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default)
                                   else "")


def site_origin() -> str | None:
    """Where the site's pages come from (``ckan.site_url``): the origin
    the buckets let send parts of direct uploads."""
    return origin_of(tk.config.get("ckan.site_url") or "")


def browser_direct_upload() -> bool:
    """Whether CKAN's resource form sends files straight to the object
    store (with the store configured); off: CKAN's own form upload."""
    # Declared with its default and a strict bool validator.
    return bool(tk.config["ckanext.dcor_depot.browser_direct_upload"])


def local_backup_location() -> Path | None:
    value = tk.config["dcor_object_store.local_backup_location"]
    return Path(value) if value else None


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    ssl_verify: bool
    bucket_template: str


def s3_available() -> bool:
    """S3 is used when both the access key id and the secret are set."""
    return bool(tk.config["dcor_object_store.access_key_id"]
                and tk.config["dcor_object_store.secret_access_key"])


def s3_settings() -> S3Settings:
    return S3Settings(
        endpoint_url=tk.config["dcor_object_store.endpoint_url"],
        access_key_id=tk.config["dcor_object_store.access_key_id"],
        secret_access_key=tk.config["dcor_object_store.secret_access_key"],
        ssl_verify=tk.config["dcor_object_store.ssl_verify"],
        bucket_template=tk.config["dcor_object_store.bucket_name"],
    )


@dataclass(frozen=True)
class DirectUploadSettings:
    part_size: int
    url_lifetime: int
    max_size: int
    download_url_lifetime: int
    max_open_per_user: int


def direct_upload_settings() -> DirectUploadSettings:
    return DirectUploadSettings(
        part_size=tk.config["dcor_object_store.upload_part_size"],
        url_lifetime=tk.config["dcor_object_store.upload_url_lifetime"],
        max_size=tk.config["dcor_object_store.upload_max_size"],
        download_url_lifetime=tk.config[
            "dcor_object_store.download_url_lifetime"],
        max_open_per_user=tk.config[
            "dcor_object_store.upload_max_open_per_user"],
    )


def dcoraid_url_lifetime() -> int:
    """Seconds the URLs of DCOR-Aid's uploads stay valid."""
    return int(tk.config["dcor_object_store.dcoraid_upload_url_lifetime"])


def check_consistency() -> None:
    """Cross-option checks the per-option validators cannot make."""
    key_id = tk.config["dcor_object_store.access_key_id"]
    secret = tk.config["dcor_object_store.secret_access_key"]
    if bool(key_id) != bool(secret):
        missing = ("secret_access_key" if key_id else "access_key_id")
        raise CkanConfigurationException(
            f"dcor_object_store.{missing} is empty: set both "
            "dcor_object_store.access_key_id and "
            "dcor_object_store.secret_access_key, or neither (S3 off)")
    if key_id and not tk.config["dcor_object_store.endpoint_url"]:
        raise CkanConfigurationException(
            "dcor_object_store.endpoint_url is empty: S3 credentials are "
            "set, so the endpoint of the object store is needed")
