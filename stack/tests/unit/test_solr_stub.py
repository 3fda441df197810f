"""The development stack's Solr stand-in answers CKAN's queries.

It is driven with pysolr, the client CKAN itself uses, with the query
shapes ``package_search`` and CKAN's pages send.
"""
from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pysolr
import pytest

STUB_PATH = Path(__file__).resolve().parents[2] / "solr_stub.py"
SITE = '+site_id:"dcor-unit"'


def load_stub() -> ModuleType:
    spec = importlib.util.spec_from_file_location("solr_stub", STUB_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stub = load_stub()


def dataset(name: str, org: str, private: bool, modified: str,
            tags: list[str]) -> dict:
    """A document shaped like CKAN's index.py makes it."""
    data = {"id": f"id-{name}", "name": name, "title": name.title(),
            "notes": f"Notes of {name}", "private": private}
    return {
        "id": f"id-{name}", "index_id": f"key-{name}", "name": name,
        "title": name.title(), "notes": f"Notes of {name}",
        "organization": org, "owner_org": f"id-{org}", "tags": tags,
        "res_name": [f"{name}.rtdc"], "state": "active",
        "capacity": "private" if private else "public",
        "permission_labels": [f"member-id-{org}"] if private else ["public"],
        "site_id": "dcor-unit", "entity_type": "package",
        "dataset_type": "dataset", "metadata_modified": modified,
        "data_dict": json.dumps(data),
    }


@pytest.fixture
def solr() -> Iterator[pysolr.Solr]:
    server = stub.make_server(0, stub.Index())
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    port = server.server_address[1]
    conn = pysolr.Solr(f"http://127.0.0.1:{port}/solr/ckan",
                       timeout=10)
    conn.add([
        dataset("blood", "org-a", False, "2026-01-03T00:00:00Z",
                ["cells", "blood"]),
        dataset("beads", "org-b", False, "2026-01-01T00:00:00Z", ["beads"]),
        dataset("secret", "org-a", True, "2026-01-02T00:00:00Z", ["cells"]),
    ], commit=True)
    yield conn
    server.shutdown()
    server.server_close()


def search(conn: pysolr.Solr, labels: list[str] | None = None,
           q: str = "*:*", **params) -> pysolr.Results:
    """The parameters PackageSearchQuery.run sends."""
    fq = [params.pop("fq", ""), SITE, "+state:active"]
    if labels is not None:
        quoted = " OR ".join(f'"{label}"' for label in labels)
        fq.append(f"+permission_labels:({quoted})")
    params.setdefault("sort", "score desc, metadata_modified desc")
    params.setdefault("rows", 11)
    return conn.search(q, fq=fq, fl="id data_dict", wt="json", **params)


def names(results: pysolr.Results) -> list[str]:
    return [json.loads(doc["data_dict"])["name"] for doc in results.docs]


def test_anonymous_sees_public_datasets_only(solr):
    assert names(search(solr, ["public"])) == ["blood", "beads"]
    assert search(solr, ["public"], fq="+capacity:public").hits == 2


def test_member_sees_the_private_dataset_of_the_organization(solr):
    found = search(solr, ["public", "member-id-org-a", "creator-user-x"])
    assert names(found) == ["blood", "secret", "beads"]
    assert search(solr, ["public", "member-id-org-b"]).hits == 2


def test_sysadmin_query_without_labels_sees_everything(solr):
    assert search(solr).hits == 3


def test_organization_page_filter(solr):
    found = search(solr, ["public", "member-id-org-a"],
                   fq=' owner_org:"id-org-a" +dataset_type:dataset')
    assert names(found) == ["blood", "secret"]
    facet_filter = search(solr, None, fq=' organization:"org-b"')
    assert names(facet_filter) == ["beads"]


def test_paging_and_sort(solr):
    page = solr.search("*:*", fq=[SITE], rows=1, start=1, fl="name",
                       sort="metadata_modified desc")
    assert page.hits == 3
    assert [doc["name"] for doc in page.docs] == ["secret"]
    by_name = solr.search("*:*", fq=[SITE], fl="name", sort="name asc")
    assert [d["name"] for d in by_name.docs] == ["beads", "blood", "secret"]
    by_title = solr.search("*:*", fl="name", sort="title_string desc, "
                           "name desc")
    assert [d["name"] for d in by_title.docs][0] == "secret"


def test_facet_counts_are_solr_shaped(solr):
    found = search(solr, ["public", "member-id-org-a"], rows=0,
                   facet="true", **{"facet.field": ["organization", "tags"],
                                    "facet.limit": 50, "facet.mincount": 1})
    assert found.docs == []
    assert found.facets["facet_fields"] == {
        "organization": ["org-a", 2, "org-b", 1],
        "tags": ["cells", 2, "beads", 1, "blood", 1]}
    limited = search(solr, ["public"], facet="true",
                     **{"facet.field": "tags", "facet.limit": 1})
    assert limited.facets["facet_fields"]["tags"] == ["beads", 1]


def test_free_text_and_field_queries(solr):
    assert names(search(solr, ["public"], q="BLOOD")) == ["blood"]
    assert names(search(solr, ["public"], q="notes of")) == ["blood", "beads"]
    assert names(search(solr, None, q="beads.rtdc")) == ["beads"]
    assert search(solr, None, q="no-such-word").hits == 0
    one = solr.search('name:"blood" OR id:"blood"',
                      fq='+site_id:"dcor-unit" +entity_type:package')
    assert [doc["name"] for doc in one.docs] == ["blood"]
    assert search(solr, None, fq="-tags:cells").hits == 1
    assert search(solr, None, fq="tags:(beads OR blood)").hits == 2


def test_other_sites_and_states_stay_out(solr):
    other = dataset("elsewhere", "org-a", False, "2026-01-04T00:00:00Z", [])
    other["site_id"] = "dcor-other"
    deleted = dataset("gone", "org-a", False, "2026-01-04T00:00:00Z", [])
    deleted["state"] = "deleted"
    solr.add([other, deleted])
    assert search(solr).hits == 3
    assert solr.search("*:*").hits == 5


def test_reindexing_replaces_and_deleting_removes(solr):
    changed = dataset("blood", "org-b", False, "2026-01-05T00:00:00Z", [])
    solr.add([changed], commit=True)
    assert search(solr).hits == 3
    assert names(search(solr, fq=' organization:"org-b"')) == [
        "blood", "beads"]
    # How CKAN's index.py deletes one dataset, then clears a site.
    solr.delete(q='+entity_type:package AND +(id:"id-beads" OR '
                  'name:"id-beads") AND +site_id:"dcor-unit"', commit=True)
    assert names(search(solr)) == ["blood", "secret"]
    solr.delete(id="key-secret")
    assert names(search(solr)) == ["blood"]
    solr.delete(q='+site_id:"dcor-unit"')
    solr.commit()
    assert solr.search("*:*").hits == 0


def test_schema_ping_and_bad_query(solr):
    assert "ckan-2.10" in solr._send_request("get", "schema?wt=schema.xml")
    assert "OK" in solr.ping()
    with pytest.raises(pysolr.SolrError):
        solr.search("name:(unclosed")


def test_index_survives_a_restart(tmp_path):
    index_file = tmp_path / "index.json"
    index = stub.Index(index_file)
    index.add([dataset("kept", "org-a", False, "2026-01-01T00:00:00Z", [])])
    index.save()
    again = stub.Index(index_file)
    body = again.search({"q": ["kept"], "fl": ["name"]})
    assert body["response"]["docs"] == [{"name": "kept"}]
    index_file.write_text("{broken")
    assert stub.Index(index_file).docs == {}
