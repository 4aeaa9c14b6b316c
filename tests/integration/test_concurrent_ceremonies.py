"""One person's ceremonies finished from several tabs at the same moment, on real threads: one
wins, the others get a 4xx, and what is stored is what one alone would store.

- A recovery link is used once: one new passkey, however many tabs finish with it.
- "Set up another" at the policy's passkey limit adds one passkey up to the limit, never past it.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import ORIGIN, Browser, assert_ok, enrolled_person, sign_in
from tests.integration.test_concurrent_changes import all_at_once
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.core.policy import Policy
from threshold.enrollment.actions import do_issue_recovery
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 3
TABS = 3


def tab() -> Browser:
    browser = Browser()
    browser.client.raise_request_exception = False  # the status the server sent, not a re-raise
    return browser


def test_a_recovery_link_finished_from_several_tabs_at_once_adds_one_passkey():
    for k in range(ROUNDS):
        person = enrolled_person(f"ada{k}@example.com", "Ada")
        token = do_issue_recovery(person.user, Origin.cli(), send_email=False).link.rsplit("/", 1)[
            -1
        ]
        ready = []
        for browser in [tab() for _ in range(TABS)]:
            browser.get(f"/enroll/{token}")
            options = browser.post_json(f"/enroll/{token}/options")
            assert options.status_code == 200, options.content
            ready.append((browser, SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)))

        answers = all_at_once(
            [lambda b=b, c=c, t=token: b.post_json(f"/enroll/{t}/result", c) for b, c in ready]
        )

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] + [400] * (TABS - 1), statuses
        assert Passkey.objects.filter(user=person.user).count() == 2  # the lost one and one new


def test_set_up_another_at_the_limit_from_several_tabs_at_once_stops_at_the_limit():
    do_update_policy(Policy(passkey_limit=2), Origin.cli())
    for k in range(ROUNDS):
        person = enrolled_person(f"bea{k}@example.com", "Bea")
        ready = []
        for browser in [tab() for _ in range(TABS)]:
            assert_ok(sign_in(browser, person.authenticator))
            options = browser.post_json(
                "/settings/security-methods/add/options", {"device": "security-key"}
            )
            assert options.status_code == 200, options.content
            ready.append((browser, SoftAuthenticator().create(options.json()["publicKey"], ORIGIN)))

        answers = all_at_once(
            [
                lambda b=b, c=c: b.post_json("/settings/security-methods/add/result", c)
                for b, c in ready
            ]
        )

        statuses = sorted(answer.status_code for answer in answers)
        assert 500 not in statuses, statuses
        assert statuses.count(200) == 1, statuses
        assert Passkey.objects.filter(user=person.user).count() == 2
