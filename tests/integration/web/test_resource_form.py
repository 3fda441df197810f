"""CKAN's resource form sends a chosen file straight to the object store.

A real headless Chromium, a real editor logged in through the login form,
the live site and the real store. Screenshots of the upload in progress
and of the resource page are kept in ``.devstack/artifacts/``
(tests.support.browser.ARTIFACTS), named after the CKAN version.
"""
from __future__ import annotations

import hashlib
import os

import ckan
import pytest
from ckan.tests import helpers

from ckanext.dcor_depot.storage import layout
from tests.support import browser
from tests.support.access import dataset, fresh_dataset
from tests.support.data import data_file
from tests.support.resource_form import (
    MODULE,
    MiB,
    choose_file,
    press,
    progress,
    remembered_upload,
    status_text,
    stored_part_count,
)
from tests.support.store import object_sha256, open_uploads

CKAN = f"ckan-{ckan.__version__}"  # in the screenshots' names

# Skipped only outside CI: there, `make setup` installs the browser, and a
# missing one must fail rather than hide the form's tests.
pytestmark = pytest.mark.skipif(
    browser.missing() is not None and not os.environ.get("CI"),
    reason=str(browser.missing()))


def draft_dataset(site, org) -> dict:
    """A dataset in CKAN's new-dataset stage (its resource form has
    "Finish"/"Publish"). CKAN ignores ``state`` when a dataset is created
    by an editor, but not when it is changed."""
    ds = dataset(site, org, private=True)
    return site.action("package_patch", org.editor.token, id=ds["id"],
                       state="draft")


def test_a_100_mib_file_goes_straight_to_the_store(
        site, org, editor_browser, tmp_path, report_artifacts):
    driver = editor_browser
    ds = draft_dataset(site, org)
    data, _ = data_file(tmp_path, 100 * MiB)
    driver.get(f"{site.url}/dataset/{ds['name']}/resource/new")
    assert MODULE in driver.page_source
    choose_file(driver, data)
    # Slow enough to watch the bar: 25 MiB/s, 4 s at least.
    driver.set_network_conditions(latency=0, upload_throughput=25 * MiB,
                                  download_throughput=100 * MiB)
    press(driver, "go-metadata")  # "Finish" (2.11) / "Publish" (2.12)

    browser.wait(driver, lambda d: 20 <= progress(d) <= 80,
                 "the upload to be under way")
    assert "of 100.0 MiB" in status_text(driver)
    report_artifacts.append(
        browser.screenshot(driver, f"resource-form-progress-{CKAN}.png"))
    # CKAN publishes the draft and shows the dataset, as after its own
    # form upload.
    browser.wait(driver, lambda d: d.current_url.rstrip("/")
                 == f"{site.url}/dataset/{ds['name']}",
                 "the dataset page")
    driver.delete_network_conditions()

    shown = fresh_dataset(ds["id"])
    assert shown["state"] == "active"
    res, = shown["resources"]
    assert res["url_type"] == "s3_upload"
    assert res["name"] == "cells.rtdc"
    assert int(res["size"]) == 100 * MiB
    assert object_sha256(org.bucket, layout.object_key(res["id"])) \
        == hashlib.sha256(data.read_bytes()).hexdigest()
    assert open_uploads(org.bucket) == []

    driver.get(f"{site.url}/dataset/{ds['name']}/resource/{res['id']}")
    assert "cells.rtdc" in driver.title
    report_artifacts.append(
        browser.screenshot(driver, f"resource-page-{CKAN}.png"))


def test_a_reloaded_upload_resumes_and_save_and_add_another(
        site, org, editor_browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    driver = editor_browser
    ds = dataset(site, org, private=True)
    data, _ = data_file(tmp_path, 30 * MiB)  # six parts of 5 MiB
    form_url = f"{site.url}/dataset/{ds['name']}/resource/new"
    driver.get(form_url)
    choose_file(driver, data)
    driver.set_network_conditions(latency=0, upload_throughput=10 * MiB,
                                  download_throughput=100 * MiB)
    press(driver, "again")
    rid = browser.wait(driver, remembered_upload, "the upload to start")
    browser.wait(driver, lambda d: stored_part_count(org, rid) >= 4,
                 "the first parts to be stored")
    driver.get(form_url)  # a reload: the parts under way are lost

    choose_file(driver, data)
    form = driver.find_element(By.ID, "resource-edit")
    press(driver, "again")
    browser.wait(driver, lambda d: "parts were already stored"
                 in status_text(d), "the upload to resume")
    assert "Resuming: 4 of 6" in status_text(driver) \
        or "Resuming: 5 of 6" in status_text(driver)
    # "Save & add another": back to an empty form for the next resource
    browser.wait(driver, EC.staleness_of(form), "the next form")
    driver.delete_network_conditions()
    assert driver.current_url == form_url
    assert remembered_upload(driver) is None

    res, = fresh_dataset(ds["id"])["resources"]
    assert res["id"] == rid  # the same upload, resumed
    assert int(res["size"]) == 30 * MiB
    assert object_sha256(org.bucket, layout.object_key(rid)) \
        == hashlib.sha256(data.read_bytes()).hexdigest()
    assert open_uploads(org.bucket) == []


def test_a_refusal_is_shown_in_the_form(site, org, editor_browser,
                                        tmp_path):
    from selenium.webdriver.common.by import By
    driver = editor_browser
    ds = dataset(site, org, private=True)
    driver.get(f"{site.url}/dataset/{ds['name']}/resource/new")
    choose_file(driver, data_file(tmp_path, 1000)[0])
    # Meanwhile the editor loses the right to add resources.
    helpers.call_action("organization_member_create", id=org.id,
                        username=org.editor.name, role="member")
    press(driver, "go-dataset-complete")  # "Add"

    alert = driver.find_element(By.CSS_SELECTOR,
                                ".dcor-direct-upload-error")
    browser.wait(driver, lambda d: alert.is_displayed(), "the error")
    assert "not authorized" in alert.text.lower() \
        or "access denied" in alert.text.lower()
    assert driver.find_element(
        By.CSS_SELECTOR, 'button[value="go-dataset-complete"]').is_enabled()
    assert driver.current_url.endswith("/resource/new")
    assert fresh_dataset(ds["id"])["resources"] == []


CSRF_PROBE = """
const done = arguments[arguments.length - 1];
const field = document.querySelector('meta[name=csrf_field_name]').content;
const token = document.querySelector('meta[name="' + field + '"]').content;
const call = (extra) => fetch(arguments[0], {method: 'POST',
  headers: Object.assign({'Content-Type': 'application/json'}, extra),
  body: JSON.stringify({package_id: arguments[1], name: 'x', size: 10})})
  .then((reply) => reply.status);
Promise.all([call({'X-CSRFToken': token}), call({}),
             call({'X-CSRFToken': 'forged'})]).then(done);
"""


def test_the_session_calls_pass_ckans_csrf_check(site, org,
                                                 editor_browser):
    """The form calls the API with the session cookie and the page's CSRF
    token in X-CSRFToken, as CKAN's own scripts do."""
    driver = editor_browser
    ds = dataset(site, org, private=True)
    driver.get(f"{site.url}/dataset/{ds['name']}/resource/new")
    with_token, without, forged = driver.execute_async_script(
        CSRF_PROBE, f"{site.url}/api/3/action/resource_upload_s3_urls",
        ds["id"])
    assert with_token == 200
    if ckan.__version__.startswith("2.11"):
        assert without == forged == 400
    # (CKAN 2.12.0 stops checking the API view in the whole process once
    # any request with an API token, or none, has reached it.)
