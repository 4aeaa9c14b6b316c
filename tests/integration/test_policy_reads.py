"""The policy is read once per request (threshold.policy.access.policy_for), however many
times the view and the actions it calls use it."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import ORIGIN, Browser, assert_ok, begin_sign_in
from threshold.audit.actions import Origin
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.policy.models import OrganisationPolicy

pytestmark = pytest.mark.django_db


def policy_selects(queries: CaptureQueriesContext) -> int:
    table = OrganisationPolicy._meta.db_table
    return sum(
        1
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith("SELECT") and table in query["sql"]
    )


def test_each_request_reads_the_policy_at_most_once(ada, clock):
    # A stored row, not the defaults.
    do_update_policy(dataclasses.replace(get_policy(), passkey_limit=5), Origin.cli())
    browser = Browser()
    with CaptureQueriesContext(connection) as options_queries:
        options = begin_sign_in(browser)
    with CaptureQueriesContext(connection) as result_queries:
        assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN)))
    assert policy_selects(options_queries) == 1
    assert policy_selects(result_queries) <= 1

    for path in ("/settings", "/", "/settings/security-methods/add", "/settings/verify"):
        with CaptureQueriesContext(connection) as queries:
            assert browser.get(path).status_code == 200
        assert policy_selects(queries) <= 1, path
    # Checked for a recent verification, dated and limited: three uses, one read.
    with CaptureQueriesContext(connection) as queries:
        response = browser.post_json("/settings/security-methods/add/options", {})
    assert response.status_code == 200
    assert policy_selects(queries) == 1
