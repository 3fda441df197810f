"""The operator page and a resource page's storage box in a real headless
Chromium, a sysadmin logged in through CKAN's login form. Screenshots
are kept in ``.devstack/artifacts/`` (operator-page.png,
resource-storage.png; docs/images/operator-page.png is a copy)."""
from __future__ import annotations

import os

import pytest

from ckanext.dcor_depot.operations.audit import findings
from ckanext.dcor_depot.operations.audit.findings import Finding, Kind, Report
from ckanext.dcor_depot.operations.audit.usage import OrgUsage
from ckanext.dcor_depot.storage import layout
from tests.support import browser
from tests.support.access import dataset, organization, stored_resource
from tests.support.pages import ADMIN_PAGE, kept_reports

pytestmark = pytest.mark.skipif(
    browser.missing() is not None and not os.environ.get("CI"),
    reason=str(browser.missing()))


@pytest.fixture
def sysadmin_browser(site):
    # the window of the README's picture
    with browser.logged_in_sysadmin(site.url, window_size=(1200, 1300)
                                    ) as driver:
        yield driver


def report_of(org, ds: dict, rid: str) -> Report:
    usage = OrgUsage(org.name, block_bytes=3 * 2**30 + 2**29,
                     multipart_uploads=1, multipart_bytes=40 * 2**20)
    usage.add_object("resource", 2**31)
    usage.add_object("condensed", 2**27)
    usage.add_object("preview", 2**16)
    return Report(
        started="2025-03-01T02:00:00+00:00",
        finished="2025-03-01T02:07:31+00:00", options={"deep": True},
        usage={org.name: usage.as_json()},
        findings=[
            Finding(Kind.WRONGLY_PRIVATE, org.name, ds["name"], rid,
                    f"{org.bucket}:{layout.object_key(rid)}",
                    "the dataset is public, the object is not",
                    dataset_id=ds["id"]),
            Finding(Kind.STALE_MULTIPART_UPLOAD, org.name,
                    key=f"{org.bucket}:resource/0a1/b2c/3d4e5f",
                    detail="started 9 days ago, 40.0 MiB in 8 parts")])


def visible_text(driver) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.TAG_NAME, "body").text


def test_a_sysadmin_reads_the_operator_page_and_a_resource_page(
        site, sysadmin_browser, report_artifacts):
    from selenium.webdriver.common.by import By
    driver = sysadmin_browser
    org = organization()
    ds = dataset(site, org, private=False)
    res = stored_resource(site, org.editor, ds["id"])
    with kept_reports():
        findings.keep(report_of(org, ds, res["id"]))
        driver.get(f"{site.url}/ckan-admin")
        driver.find_element(By.LINK_TEXT, "Data storage").click()
        browser.wait(driver, lambda d: d.current_url.endswith(ADMIN_PAGE),
                     "the operator page")
        text = visible_text(driver)
        assert "Last audit finished" in text
        assert "2025-03-01 02:07 UTC" in text
        assert "File resources (now)" in text
        assert "wrongly-private" in text and "stale-multipart-upload" in text
        row = driver.find_element(
            By.CSS_SELECTOR, f'tr[data-organization="{org.name}"]')
        assert row.find_element(By.CSS_SELECTOR, ".dcor-in-store").text \
            == "1"
        assert row.find_element(By.CSS_SELECTOR, ".dcor-block").text \
            == "3.5 GiB"
        report_artifacts.append(
            browser.screenshot(driver, "operator-page.png"))

        driver.find_element(By.LINK_TEXT, ds["name"]).click()
        browser.wait(driver, lambda d: d.current_url.rstrip("/")
                     == f"{site.url}/dataset/{ds['name']}", "the dataset")

    driver.get(f"{site.url}/dataset/{ds['name']}/resource/{res['id']}")
    box = driver.find_element(By.CSS_SELECTOR, ".dcor-depot-storage")
    driver.execute_script("arguments[0].scrollIntoView();", box)
    assert "In the object store" in box.text
    for cell in (".dcor-in-store", ".dcor-backed-up"):
        assert box.find_element(By.CSS_SELECTOR, cell).text == "yes"
    assert box.find_element(By.CSS_SELECTOR, ".dcor-upload-path").text \
        == str(layout.ckan_upload_path(res["id"]))
    report_artifacts.append(
        browser.screenshot(driver, "resource-storage.png"))
