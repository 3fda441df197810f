"""The demo site lists its datasets: CKAN on the Solr stand-in.

A separate live site, whose ``solr_url`` is a fresh stand-in of
stack/solr_stub.py (the stack's shared one may be an older, non-indexing
build until the stack restarts), serves visitors, members and outsiders.
Private datasets must stay hidden from those who may not see them.
"""
from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tests.support import access
from tests.support import live_site as live
from tests.support.stack import anonymous_get, ckan_command

STUB_PATH = Path(__file__).parents[2] / "stack" / "solr_stub.py"


def _stand_in() -> tuple[Any, str]:
    spec = importlib.util.spec_from_file_location("solr_stub", STUB_PATH)
    assert spec is not None and spec.loader is not None
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    server = stub.make_server(0, stub.Index())
    threading.Thread(target=server.serve_forever, args=(0.05,),
                     daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/solr/ckan"


@pytest.fixture(scope="module")
def search_site(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[live.LiveSite]:
    server, solr_url = _stand_in()
    ini = Path(request.config.getoption("--ckan-ini")).resolve()
    with mock.patch.dict(live.OVERRIDES, {"solr_url": solr_url}):
        serving = live.serve(ckan_command(), ini,
                             tmp_path_factory.mktemp("search-site"))
        site = next(serving)
    yield site
    serving.close()
    server.shutdown()
    server.server_close()


@pytest.fixture
def lab(search_site, pipeline):
    """An organization with one public and one private dataset."""
    org = access.organization()
    shown = access.dataset(search_site, org, private=False,
                           title="Public blood cells", tags=[{"name": "rbc"}])
    hidden = access.dataset(search_site, org, private=True,
                            title="Unpublished beads")
    return org, shown, hidden


def found(site: live.LiveSite, org: access.Org, token: str | None = None,
          **query) -> list[str]:
    result = site.action("package_search", token,
                         fq=f'owner_org:"{org.id}"', **query)
    return sorted(d["name"] for d in result["results"])


def test_visitors_and_outsiders_see_the_public_dataset_only(
        search_site, lab):
    org, shown, hidden = lab
    outsider = access.person()
    assert found(search_site, org) == [shown["name"]]
    assert found(search_site, org, outsider.token,
                 include_private=True) == [shown["name"]]
    page = anonymous_get(f"{search_site.url}/dataset/?q=blood")
    assert page.status_code == 200
    assert "Public blood cells" in page.text
    assert "Unpublished beads" not in page.text
    org_page = anonymous_get(f"{search_site.url}/organization/{org.name}")
    assert "Public blood cells" in org_page.text
    assert "Unpublished beads" not in org_page.text


def test_members_see_the_private_dataset(search_site, lab):
    org, shown, hidden = lab
    assert found(search_site, org, org.member.token, include_private=True) \
        == sorted([shown["name"], hidden["name"]])
    # without include_private CKAN asks for public datasets only
    assert found(search_site, org, org.member.token) == [shown["name"]]


def test_facets_paging_and_deletion(search_site, lab):
    org, shown, hidden = lab
    result = search_site.action(
        "package_search", org.admin.token, fq=f'owner_org:"{org.id}"',
        include_private=True, rows=1, start=1, sort="title_string asc",
        **{"facet.field": ["organization", "tags"]})
    assert result["count"] == 2
    assert [d["name"] for d in result["results"]] == [hidden["name"]]
    assert result["facets"]["organization"] == {org.name: 2}
    assert result["facets"]["tags"] == {"rbc": 1}
    search_site.action("package_delete", org.admin.token, id=shown["id"])
    assert found(search_site, org) == []


def test_a_malformed_query_is_refused_not_a_crash(search_site, lab):
    status = search_site.status("package_search", q="name:(unclosed")
    assert status in (400, 409)
