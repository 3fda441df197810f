"""The web form after a failure: an answer lost on the way back, an upload
still being completed by an earlier submission, a store out of reach.

What a user does (submit, read the message, submit again) in a real
headless Chromium against the live site and the real store. A lost
answer is what a proxy does: the request reaches CKAN, the browser gets
the proxy's "504 Gateway Time-out" page instead of CKAN's answer.
"""
from __future__ import annotations

import os
import time

import ckan.plugins.toolkit as tk
import pytest

from ckanext.dcor_depot.records import upload_grants
from ckanext.dcor_depot.storage import layout, object_store
from tests.support import browser
from tests.support.access import Org, dataset, fresh_dataset
from tests.support.data import data_file
from tests.support.resource_form import (
    MiB,
    choose_file,
    press,
    remembered_upload,
    shown_error,
    stored_objects,
)
from tests.support.store import open_uploads

pytestmark = pytest.mark.skipif(
    browser.missing() is not None and not os.environ.get("CI"),
    reason=str(browser.missing()))

#: The next resource_create reaches CKAN (FORWARD = true) or not, and
#: the page gets a proxy's 504 page instead of CKAN's answer.
PROXY_TIMES_OUT = """
const forward = arguments[0];
const real = window.fetch;
window.fetch = function (url, options) {
  if (!String(url).endsWith('/resource_create')) {
    return real(url, options);
  }
  window.fetch = real;  // this answer only
  const gateway = () => new Response(
    '<html><body><h1>504 Gateway Time-out</h1></body></html>',
    {status: 504, headers: {'Content-Type': 'text/html'}});
  return forward ? real(url, options).then(gateway)
                 : Promise.resolve(gateway());
};
"""


def form_with_file(driver, site, ds, path) -> None:
    driver.get(f"{site.url}/dataset/{ds['name']}/resource/new")
    choose_file(driver, path)


def wait_for_error(driver, text: str) -> str:
    return browser.wait(
        driver, lambda d: text in (shown_error(d) or "") and shown_error(d),
        f"the message {text!r}", timeout=30)


def wait_for_dataset_page(driver, site, ds) -> None:
    browser.wait(driver, lambda d: d.current_url.rstrip("/")
                 == f"{site.url}/dataset/{ds['name']}", "the dataset page",
                 timeout=30)


def resource_ids(ds) -> list[str]:
    return [res["id"] for res in fresh_dataset(ds["id"])["resources"]]


def nothing_left_open(org: Org) -> bool:
    return (open_uploads(org.bucket) == []
            and upload_grants.open_uploads(org.editor.id, time.time()) == 0)


def test_a_creation_whose_answer_was_lost_is_not_uploaded_again(
        site, org, editor_browser, tmp_path):
    driver = editor_browser
    ds = dataset(site, org, private=True)
    form_with_file(driver, site, ds, data_file(tmp_path, 12 * MiB)[0])
    driver.execute_script(PROXY_TIMES_OUT, True)
    press(driver, "go-dataset-complete")  # "Add"

    message = wait_for_error(driver, "HTTP 504")
    assert "submit the form again" in message
    rid = remembered_upload(driver)
    assert resource_ids(ds) == [rid]  # CKAN created it all the same

    press(driver, "go-dataset-complete")
    wait_for_dataset_page(driver, site, ds)
    assert resource_ids(ds) == [rid]
    assert stored_objects(org) == [layout.object_key(rid)]
    assert nothing_left_open(org)
    assert remembered_upload(driver) is None


def test_a_submission_while_the_first_one_completes_waits(
        site, org, editor_browser, tmp_path):
    driver = editor_browser
    ds = dataset(site, org, private=True)
    form_with_file(driver, site, ds, data_file(tmp_path, 12 * MiB)[0])
    driver.execute_script(PROXY_TIMES_OUT, False)
    press(driver, "go-dataset-complete")
    wait_for_error(driver, "HTTP 504")
    rid = remembered_upload(driver)
    key = layout.object_key(rid)

    # The first creation is still running (it holds the upload, as
    # CKAN's request does while the store completes a large object).
    with upload_grants.claimed(rid):
        press(driver, "go-dataset-complete")
        message = wait_for_error(driver, "still finishing")
        assert "Wait a moment, then submit the form again" in message
        assert remembered_upload(driver) == rid
        assert open_uploads(org.bucket) == [key]  # no second upload
        assert resource_ids(ds) == []

    press(driver, "go-dataset-complete")
    wait_for_dataset_page(driver, site, ds)
    assert resource_ids(ds) == [rid]
    assert stored_objects(org) == [key]
    assert nothing_left_open(org)


def test_a_store_out_of_reach_is_named_in_the_form(
        site, org, editor_browser, tmp_path):
    driver = editor_browser
    store = tk.config["dcor_object_store.endpoint_url"].rstrip("/")
    ds = dataset(site, org, private=True)
    form_with_file(driver, site, ds, data_file(tmp_path, 6 * MiB)[0])
    # As for a store that only the site's own network reaches.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"{store}/*"]})
    press(driver, "go-dataset-complete")

    message = wait_for_error(driver, "could not reach the object store")
    assert f"({store})" in message
    assert "CORS" in message and "administrators" in message
    assert resource_ids(ds) == []

    # Once the store can be reached, the same upload goes on.
    rid = remembered_upload(driver)
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    press(driver, "go-dataset-complete")
    wait_for_dataset_page(driver, site, ds)
    assert resource_ids(ds) == [rid]
    assert nothing_left_open(org)


# ------------------------------------- ending a remembered upload: own only
#: Notes every action the page posts, in sessionStorage (kept when the
#: form goes on to the dataset page).
RECORD_ACTIONS = """
const real = window.fetch;
window.fetch = function (url, options) {
  const done = JSON.parse(sessionStorage.getItem('actions') || '[]');
  done.push(String(url).split('/').pop());
  sessionStorage.setItem('actions', JSON.stringify(done));
  return real(url, options);
};
"""


def remember(driver, ds, path, rid) -> None:
    """The page remembers ``rid`` as the upload of ``path``."""
    stat = path.stat()
    key = "|".join(["dcor-direct-upload", ds["id"], path.name,
                    str(stat.st_size), str(stat.st_mtime_ns // 10**6)])
    driver.execute_script("localStorage.setItem(arguments[0], arguments[1])",
                          key, rid)


def posted_actions(driver) -> list[str]:
    return driver.execute_script(
        "return JSON.parse(sessionStorage.getItem('actions') || '[]');")


def test_a_remembered_upload_of_another_user_is_never_ended(
        site, org, tmp_path):
    ds = dataset(site, org, private=True)
    path, _ = data_file(tmp_path, 6 * MiB)
    os.utime(path, (1_700_000_000, 1_700_000_000))  # whole milliseconds
    issued = site.action("resource_upload_s3_urls", org.editor.token,
                         package_id=ds["id"], name=path.name,
                         size=path.stat().st_size)
    rid = issued["resource_id"]
    # a sysadmin, whose aborts the site would allow with force
    with browser.logged_in_sysadmin(site.url) as driver:
        form_with_file(driver, site, ds, path)
        remember(driver, ds, path, rid)
        driver.execute_script(RECORD_ACTIONS)
        press(driver, "go-dataset-complete")
        wait_for_dataset_page(driver, site, ds)
        actions = posted_actions(driver)
    assert "resource_upload_s3_status" in actions
    assert "resource_upload_s3_abort" not in actions
    # The editor's upload is untouched; the sysadmin's file is a new one.
    assert upload_grants.load(rid) is not None
    assert layout.object_key(rid) in open_uploads(org.bucket)
    assert rid not in resource_ids(ds) and len(resource_ids(ds)) == 1


def test_a_remembered_upload_the_store_lost_is_ended(
        site, org, editor_browser, tmp_path):
    driver = editor_browser
    ds = dataset(site, org, private=True)
    path, _ = data_file(tmp_path, 6 * MiB)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    issued = site.action("resource_upload_s3_urls", org.editor.token,
                         package_id=ds["id"], name=path.name,
                         size=path.stat().st_size)
    rid = issued["resource_id"]
    object_store.get_client().abort_multipart_upload(
        Bucket=org.bucket, Key=layout.object_key(rid),
        UploadId=issued["upload_id"])
    form_with_file(driver, site, ds, path)
    remember(driver, ds, path, rid)
    driver.execute_script(RECORD_ACTIONS)
    press(driver, "go-dataset-complete")
    wait_for_dataset_page(driver, site, ds)
    assert "resource_upload_s3_abort" in posted_actions(driver)
    assert upload_grants.load(rid) is None  # ended: no longer open
    new, = resource_ids(ds)
    assert new != rid
    assert nothing_left_open(org)
