"""A headless Chromium driven by Selenium, for tests of the web pages.

Debian's ``chromium`` and ``chromium-driver`` (stack/install.sh installs
them). Screenshots are kept as test artifacts in :data:`ARTIFACTS`
(``.devstack/artifacts/``, ignored by git; ``DCOR_TEST_ARTIFACTS``
overrides it).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ckan.model as model

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("DCOR_TEST_ARTIFACTS")
                 or ROOT / ".devstack" / "artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Quiet and reproducible: no background traffic, no GPU, no sandbox
# (tests may run as root in a container).
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
          "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--window-size=1280,1100"]


def missing() -> str | None:
    """Why no browser test can run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (stack/requirements-dev.txt)"
    for program in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(program):
            return f"{program} is missing (apt-get install chromium " \
                   "chromium-driver)"
    return None


@contextmanager
def chromium() -> Iterator:
    """A fresh headless Chromium (own profile) and its driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="dcor-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in _FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options,
                                  service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


def set_password(user_name: str, password: str) -> None:
    """Give a test user a known password (for the login form)."""
    user = model.User.get(user_name)
    user.password = password
    model.Session.commit()


def log_in(driver, site_url: str, user_name: str, password: str) -> None:
    """Log in through CKAN's login form, as a person would."""
    from selenium.webdriver.common.by import By
    driver.get(f"{site_url}/user/login")
    driver.find_element(By.ID, "field-login").send_keys(user_name)
    driver.find_element(By.ID, "field-password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR,
                        "form button[type=submit].btn-primary").click()
    wait(driver, lambda d: "/user/login" not in d.current_url,
         "the login to finish")


@contextmanager
def logged_in_sysadmin(site_url: str,
                       window_size: tuple[int, int] | None = None
                       ) -> Iterator:
    """Chromium with a new sysadmin logged in (``window_size``: set
    before the login)."""
    from tests.support.access import person
    from tests.support.resource_form import PASSWORD
    admin = person(sysadmin=True)
    set_password(admin.name, PASSWORD)
    with chromium() as driver:
        if window_size is not None:
            driver.set_window_size(*window_size)
        log_in(driver, site_url, admin.name, PASSWORD)
        yield driver


def wait(driver, condition, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        condition, f"timed out waiting for {what}")


def screenshot(driver, name: str) -> Path:
    """Save a screenshot as an artifact; returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
