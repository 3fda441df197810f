"""Fixtures of the browser tests: the editor of ``org`` (the integration
tier's fixture) logged in to the live site in a headless Chromium."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import browser
from tests.support.resource_form import PASSWORD


@pytest.fixture
def editor_browser(site, org):
    """Chromium with the organization's editor logged in."""
    browser.set_password(org.editor.name, PASSWORD)
    with browser.chromium() as driver:
        browser.log_in(driver, site.url, org.editor.name, PASSWORD)
        yield driver


@pytest.fixture
def report_artifacts(request):
    """Name the artifacts of a test on the terminal."""
    paths: list[Path] = []
    yield paths
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not paths:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for path in paths:
            reporter.write_line(f"artifact: {path}")
