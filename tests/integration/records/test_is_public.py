"""One rule for "is this dataset public": the Python predicate and its
SQL (used by the operator page's counts) agree on every combination the
database can hold."""
from __future__ import annotations

import itertools
import uuid

import pytest
import sqlalchemy as sa
from ckan import model
from ckan.tests import factories

from ckanext.dcor_depot.records import ckan_data

PRIVATE = (True, False, None)
STATES = ("active", "draft", "deleted")


@pytest.fixture
def datasets(pipeline) -> dict[str, tuple]:
    org = factories.Organization()
    made: dict[str, tuple] = {}
    for private, state, owner in itertools.product(
            PRIVATE, STATES, (org["id"], None)):
        pkg = model.Package(name=f"is-public-{uuid.uuid4().hex[:12]}",
                            private=private, state=state, owner_org=owner)
        model.Session.add(pkg)
        model.Session.flush()
        made[pkg.id] = (private, state, owner)
    model.Session.commit()
    return made


def test_the_predicate_and_its_sql_agree(datasets):
    query = sa.text(f"SELECT p.id, {ckan_data.IS_PUBLIC_SQL} AS public "
                    "FROM package AS p WHERE p.id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    with model.meta.engine.connect() as connection:
        in_sql = {row.id: row.public for row in connection.execute(
            query, {"ids": list(datasets)})}
    in_python = {pid: ckan_data.is_public(*facts)
                 for pid, facts in datasets.items()}
    assert in_sql == in_python
    # Public: active, in an organization, and not private (NULL counts
    # as not private, as in CKAN): two of the 18 combinations.
    public = sorted((datasets[pid][0] is None, datasets[pid][1],
                     datasets[pid][2] is not None)
                    for pid, is_public in in_python.items() if is_public)
    assert public == [(False, "active", True), (True, "active", True)]
