"""What a figshare article version becomes in CKAN (no services)."""
from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from ckanext.dcor_depot import errors
from ckanext.dcor_depot.operations.figshare import metadata
from ckanext.dcor_depot.operations.figshare.metadata import (
    ArticleVersion,
    DOIEntry,
    FigshareFile,
)
from tests.support.data import upstream_id

MD5_A = "a" * 32
MD5_B = "b" * 32


def test_importing_needs_neither_ckan_nor_its_config():
    code = ("import sys\n"
            "import ckanext.dcor_depot.operations.figshare.metadata\n"
            "loaded = [m for m in sys.modules\n"
            "          if m == 'ckan' or m.startswith('ckan.')]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ DOIs
@pytest.mark.parametrize("text", [
    "10.6084/m9.figshare.7771184.v2",
    "  10.6084/m9.figshare.7771184.v2\t",
    "doi:10.6084/m9.figshare.7771184.v2",
    "DOI:10.6084/M9.FIGSHARE.7771184.V2",
    "https://doi.org/10.6084/m9.figshare.7771184.v2",
    "http://dx.doi.org/10.6084/m9.figshare.7771184.v2",
])
def test_parse_doi_accepts_figshare_dois(text):
    assert metadata.parse_doi(text) == ArticleVersion(7771184, 2)


@pytest.mark.parametrize("text", [
    "",
    "10.6084/m9.figshare.abc.v1",
    "10.6084/m9.figshare.7771184",          # no version
    "10.6084/m9.figshare.7771184.v0",       # versions start at 1
    "10.6084/m9.figshare.07771184.v1",      # leading zero
    "10.6084/m9.figshare.7771184.v2x",
    "10.6084/m9.figshare.7771184.v2 extra",
    "10.1234/m9.figshare.7771184.v2",       # not figshare's prefix
    "https://figshare.com/articles/7771184",
    "ftp://doi.org/10.6084/m9.figshare.7771184.v2",
])
def test_parse_doi_refuses_anything_else(text):
    assert metadata.parse_doi(text) is None


def test_article_version_doi_round_trips():
    article = ArticleVersion(11302595, 1)
    assert article.doi == "10.6084/m9.figshare.11302595.v1"
    assert metadata.parse_doi(article.doi) == article


def test_read_doi_list(tmp_path):
    path = tmp_path / "dois.txt"
    path.write_text("# the figshare mirror\n"
                    "\n"
                    "10.6084/m9.figshare.7771184.v2  # reference data\n"
                    "10.6084/m9.figshare.abc.v1\n"
                    "   # indented comment\n"
                    "doi:10.6084/m9.figshare.12721436.v1\n",
                    encoding="utf-8")

    assert metadata.read_doi_list(path) == [
        DOIEntry(3, "10.6084/m9.figshare.7771184.v2",
                 ArticleVersion(7771184, 2)),
        DOIEntry(4, "10.6084/m9.figshare.abc.v1", None),
        DOIEntry(6, "doi:10.6084/m9.figshare.12721436.v1",
                 ArticleVersion(12721436, 1)),
    ]


def test_read_doi_list_that_is_missing(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(errors.SourceError,
                       match="cannot read the DOI list") as e:
        metadata.read_doi_list(path)
    assert str(path) in str(e.value)


def test_read_doi_list_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"\xff\xfe10.6084\xe9\n")
    with pytest.raises(errors.SourceError, match="cannot read the DOI list"):
        metadata.read_doi_list(path)


# -------------------------------------------------------------- licenses
@pytest.mark.parametrize(("name", "expected"), [
    ("CC0", "CC0-1.0"),
    ("CC 0", "CC0-1.0"),
    ("CC0 1.0", "CC0-1.0"),
    ("CC BY", "cc-by"),
    ("CC BY 4.0", "cc-by"),
    ("CC-BY 3.0 Unported", "cc-by"),
    ("cc by 4.0 international", "cc-by"),
    ("  CC   BY-SA   4.0 ", "cc-by-sa"),
    ("CC BY-NC 4.0", "cc-nc"),
    ("CC BY-NC-SA 4.0", "cc-nc"),
    ("CC BY NC ND 4.0", "cc-nc"),
])
def test_license_id_maps_creative_commons(name, expected):
    assert metadata.license_id(name) == expected


@pytest.mark.parametrize("name", [
    "MIT", "Apache 2.0", "GPL 3.0+", "CC BY-ND 4.0", "CC", "CC BY 4.0 or",
    "", None])
def test_license_id_refuses_other_licenses(name):
    with pytest.raises(errors.SourceError, match="is not supported") as e:
        metadata.license_id(name)
    assert repr(name) in str(e.value)


# ------------------------------------------------------- dataset mapping
def article_record(**fields) -> dict:
    record = {
        "id": 7771184,
        "version": 2,
        "title": "  Blood cells  ",
        "description": "<p>Cells in <b>flow</b></p><ul><li>HL60</li></ul>",
        "authors": [{"full_name": "Ann Alpha "}, {"full_name": ""},
                    {"full_name": "Bob Beta"}],
        "references": ["10.1234/abc.5", " https://example.org/paper ",
                       "", "  ", 42],
        "license": {"value": 1, "name": "CC BY 4.0"},
        "files": [],
    }
    record.update(fields)
    return record


def test_dataset_dict_maps_the_article():
    article = ArticleVersion(7771184, 2)

    data = metadata.dataset_dict(article_record(), article, "org-id")

    assert data == {
        "id": metadata.dataset_id(article.doi, "figshare-7771184-v2"),
        "name": "figshare-7771184-v2",
        "title": "Blood cells",
        "notes": "Cells in **flow**\n\n  * HL60",
        "license_id": "cc-by",
        "url": "https://doi.org/10.6084/m9.figshare.7771184.v2",
        "owner_org": "org-id",
        "private": False,
        "state": "draft",
        "extras": [
            {"key": "doi", "value": "10.6084/m9.figshare.7771184.v2"},
            {"key": "authors", "value": "Ann Alpha, Bob Beta"},
            {"key": "references",
             "value": "doi:10.1234/abc.5\nhttps://example.org/paper"},
        ],
    }


def test_dataset_dict_of_a_sparse_article():
    """No title, description, authors or references: the name stands in
    for the title and only the DOI is an extra."""
    record = article_record(title=" ", description=None, authors=None,
                            references=None,
                            license={"name": "CC0"})

    data = metadata.dataset_dict(record, ArticleVersion(5, 1), "org")

    assert data["title"] == "figshare-5-v1"
    assert data["notes"] == ""
    assert data["license_id"] == "CC0-1.0"
    assert data["extras"] == [
        {"key": "doi", "value": "10.6084/m9.figshare.5.v1"}]


def test_dataset_dict_refuses_an_unknown_license():
    record = article_record(license={"name": "MIT"})
    with pytest.raises(errors.SourceError, match="'MIT'"):
        metadata.dataset_dict(record, ArticleVersion(5, 1), "org")
    with pytest.raises(errors.SourceError, match="''"):
        metadata.dataset_dict(article_record(license=None),
                              ArticleVersion(5, 1), "org")


def test_ids_are_upstreams_md5_of_doi_name_and_supplied_md5():
    doi = "10.6084/m9.figshare.7771184.v2"
    name = metadata.dataset_name(7771184, 2)
    dataset = metadata.dataset_id(doi, name)

    assert name == "figshare-7771184-v2"
    assert dataset == upstream_id(doi, name)
    # computed once with upstream 0.14.1's make_id
    assert dataset == "89bf2177-ffeb-9893-83cc-b619fc2f6663"
    assert metadata.dataset_id(doi, "other") != dataset
    # The DOI as the API gives it, not normalized.
    assert metadata.dataset_id(doi.upper(), name) != dataset

    rid = metadata.resource_id(dataset, MD5_A)
    assert rid == upstream_id(dataset, MD5_A)
    # supplied_md5 verbatim: its case matters
    assert metadata.resource_id(dataset, MD5_A.upper()) \
        == upstream_id(dataset, MD5_A.upper()) != rid
    assert metadata.resource_id(dataset, MD5_B) != rid


def test_dataset_id_takes_the_doi_the_api_gives():
    version = ArticleVersion(7771184, 2)
    record = article_record(doi="10.6084/M9.FIGSHARE.7771184.V2")

    data = metadata.dataset_dict(record, version, "org")

    assert data["id"] == upstream_id("10.6084/M9.FIGSHARE.7771184.V2",
                                     "figshare-7771184-v2")
    # no doi in the record: the one of the list
    assert metadata.dataset_dict(article_record(), version, "org")["id"] \
        == "89bf2177-ffeb-9893-83cc-b619fc2f6663"


def test_the_resource_id_takes_supplied_md5_verbatim():
    supplied = "ABCDEF0123456789" * 2
    fig = FigshareFile.from_api(api_file("a.rtdc", supplied_md5=supplied))

    # downloads are verified against computed_md5 ...
    assert fig.md5 == MD5_A
    # ... the id is made of supplied_md5 as figshare lists it
    assert fig.supplied_md5 == supplied and fig.id_md5 == supplied
    # no supplied_md5 (upstream could not import such a file): computed
    assert FigshareFile.from_api(api_file("b.rtdc")).id_md5 == MD5_A


def test_one_supplied_md5_for_different_bytes_is_refused():
    record = article_record(files=[
        api_file("a.rtdc", supplied_md5=MD5_A),
        api_file("b.rtdc", computed_md5=MD5_B, supplied_md5=MD5_A)])
    with pytest.raises(errors.SourceError, match="same supplied_md5") as e:
        metadata.article_files(record, lambda _: None)
    assert "'a.rtdc', 'b.rtdc'" in str(e.value)


@pytest.mark.parametrize(("text", "stored"), [
    ("10.1234/abc.5", "doi:10.1234/abc.5"),
    ("  10.1234/abc.5 ", "doi:10.1234/abc.5"),
    ("doi:10.1234/abc.5", "doi:10.1234/abc.5"),
    ("https://doi.org/10.1234/abc.5", "https://doi.org/10.1234/abc.5"),
    ("Smith et al. (2020)", "Smith et al. (2020)"),
])
def test_format_reference(text, stored):
    assert metadata.format_reference(text) == stored


# ----------------------------------------------------------------- files
def api_file(name: str, **fields) -> dict:
    data = {"name": name, "size": 10, "computed_md5": MD5_A,
            "supplied_md5": "", "download_url": f"https://x/{name}",
            "is_link_only": False}
    data.update(fields)
    return data


def test_file_from_api_prefers_computed_md5():
    fig = FigshareFile.from_api(api_file("a.rtdc", computed_md5=MD5_A.upper(),
                                         supplied_md5=MD5_B))
    assert fig.md5 == MD5_A
    assert fig.size == 10
    assert fig.download_url == "https://x/a.rtdc"
    assert MD5_A in fig.md5_warning and MD5_B in fig.md5_warning
    assert "'a.rtdc'" in fig.md5_warning

    only_supplied = FigshareFile.from_api(
        api_file("b", computed_md5="", supplied_md5=MD5_B))
    assert only_supplied.md5 == MD5_B and only_supplied.md5_warning == ""


@pytest.mark.parametrize(("fields", "message"), [
    ({"computed_md5": "", "supplied_md5": ""}, "no valid MD5 \\(none\\)"),
    ({"computed_md5": "xyz"}, "no valid MD5 \\(xyz\\)"),
    ({"download_url": ""}, "no download_url"),
])
def test_file_from_api_refuses_unverifiable_files(fields, message):
    with pytest.raises(errors.SourceError, match=message):
        FigshareFile.from_api(api_file("a.rtdc", **fields))


def test_article_files_skips_link_only_and_duplicate_files():
    record = article_record(files=[
        api_file("big raw data", is_link_only=True, computed_md5=""),
        api_file("b.rtdc", computed_md5=MD5_B, supplied_md5="c" * 32),
        api_file("a.rtdc"),
        api_file("copy of a.rtdc"),
    ])
    warnings: list[str] = []

    files, notes = metadata.article_files(record, warnings.append)

    assert [(f.name, f.depot_name) for f in files] == [
        ("b.rtdc", "b.rtdc"), ("a.rtdc", "a.rtdc")]
    assert notes == ["  big raw data: link-only, skipped",
                     "  copy of a.rtdc: same bytes as a.rtdc, skipped"]
    assert len(warnings) == 1 and "'b.rtdc'" in warnings[0]


def test_look_alike_names_get_distinct_depot_names():
    names = ["data.rtdc", "_data.rtdc", " data.rtdc", "a/b", "a_b",
             "ü" * 200 + ".rtdc"]
    files = [FigshareFile(name, 1, f"{i:x}" * 32, f"https://x/{i}")
             for i, name in enumerate(names)]

    depot = metadata.depot_names(files)

    assert len(set(depot)) == len(depot)
    # A safe name no other file shares stays as it is.
    assert depot[0] == "data.rtdc" and depot[4] == "a_b"
    # The others get the start of their MD5 before the extension.
    assert depot[1] == "data.111111111111.rtdc"
    assert depot[2] == "data.222222222222.rtdc"
    assert depot[3] == "a_b.333333333333"
    assert depot[5].endswith(".555555555555.rtdc")
    assert len(depot[5].encode()) <= 255


def test_a_plain_name_equal_to_a_tagged_one_is_tagged_too():
    tagged = "x." + MD5_A[:12] + ".rtdc"
    files = [FigshareFile("x.rtdc", 1, MD5_A, "https://x/1"),
             FigshareFile("x.rtdc", 1, MD5_B, "https://x/2"),
             FigshareFile(tagged, 1, "c" * 32, "https://x/3")]

    depot = metadata.depot_names(files)

    assert depot == [tagged, "x." + MD5_B[:12] + ".rtdc",
                     "x." + MD5_A[:12] + ".cccccccccccc.rtdc"]


def test_depot_names_do_not_depend_on_figshare_s_listing_order():
    """Same bytes under two names, and a name shared by other bytes: any
    order of the listing gives the same resources and depot names."""
    listing = [FigshareFile("data.rtdc", 1, "a" * 32, "https://x/1"),
               FigshareFile("data.rtdc", 1, "b" * 32, "https://x/2"),
               FigshareFile("x.rtdc", 1, "a" * 32, "https://x/3")]
    outcomes = set()
    for order in itertools.permutations(listing):
        files, notes = metadata.distinct_files(list(order))
        outcomes.add(frozenset((f.name, f.md5, f.depot_name) for f in files))
        assert len(notes) == 1
    assert outcomes == {frozenset({
        ("data.rtdc", "a" * 32, "data." + "a" * 12 + ".rtdc"),
        ("data.rtdc", "b" * 32, "data." + "b" * 12 + ".rtdc")})}
