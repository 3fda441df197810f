"""CKAN's resource form in a browser, as the web tests use it: choose a
file, press a button, read what the form shows and what the page keeps
(:mod:`tests.support.browser` starts the browser)."""
from __future__ import annotations

from pathlib import Path

from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store
from tests.support.access import Org

MiB = 2**20
PASSWORD = "correct horse battery staple"
MODULE = 'data-module="dcor-direct-upload"'


def choose_file(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, "field-resource-upload").send_keys(str(path))


def press(driver, save: str) -> None:
    from selenium.webdriver.common.by import By
    driver.find_element(
        By.CSS_SELECTOR, f'button[name="save"][value="{save}"]').click()


def progress(driver) -> int:
    return int(driver.execute_script(
        "const bar = document.querySelector('[data-module=dcor-direct-upload]"
        " .progress-bar'); return bar ? bar.getAttribute('aria-valuenow')"
        " : -1;"))


def status_text(driver) -> str:
    return driver.execute_script(
        "return document.querySelector('.dcor-direct-upload-status')"
        ".textContent;")


def shown_error(driver) -> str | None:
    """The form's error message while it is shown (None: none shown)."""
    return driver.execute_script(
        "const box = document.querySelector('.dcor-direct-upload-error');"
        "return box && !box.hidden ? box.textContent : null;")


def remembered_upload(driver) -> str | None:
    """The resource id the page keeps for resuming (None: none kept)."""
    return driver.execute_script(
        "for (let i = 0; i < localStorage.length; i++) {"
        "  const key = localStorage.key(i);"
        "  if (key.startsWith('dcor-direct-upload|'))"
        "    return localStorage.getItem(key);"
        "} return null;")


def stored_objects(org: Org) -> list[str]:
    """Keys of the objects in the organization's bucket."""
    reply = object_store.get_client().list_objects_v2(Bucket=org.bucket)
    return [o["Key"] for o in reply.get("Contents", [])]


def stored_part_count(org: Org, rid: str) -> int:
    grant = upload_grants.load(rid)
    assert grant is not None
    reply = object_store.get_client().list_parts(
        Bucket=org.bucket, Key=layout.object_key(rid),
        UploadId=grant.upload_id)
    return len(reply.get("Parts", []))
