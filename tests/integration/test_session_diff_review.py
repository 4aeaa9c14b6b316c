"""Regression tests from the review of 3bb46bd..dd8a046 (trusted proxies, operations hardening,
attestation checks, enumeration fixes, __Host- cookies). Each is a defect the review found in
those commits (each marked "Was a defect", fixed since), and what its notes asked for."""

from __future__ import annotations

import dataclasses

import pytest

from threshold.config import ConfigError, load, start_up_warnings
from threshold.web.proxy import client_address, is_trusted_proxy

CLIENT = "198.51.100.23"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"THRESHOLD_VAR_DIR": str(tmp_path), "THRESHOLD_SECRET_KEY": "test-key-" * 5}


# Was a defect: config.load built the default origin as f"http://{rp_id}:{port}", which the
# origins' canonical check refuses for THRESHOLD_PORT=80: start-up failed blaming
# THRESHOLD_ORIGINS, which was not set.
def test_the_default_origin_on_port_80_is_the_one_browsers_send(env):
    config = load({**env, "THRESHOLD_PORT": "80"})
    assert config.rp.origins == frozenset({"http://localhost"})
    assert config.public_url == "http://localhost"


# Was a defect: web.proxy._trusted maps an IPv4-mapped peer to IPv4 but compares it only with
# networks of the same version: a proxy listed as it appears on a dual-stack socket
# (THRESHOLD_TRUSTED_PROXIES=::ffff:10.0.0.5) is never trusted, though gunicorn's
# forwarded_allow_ips (the same list) trusts it
def test_a_proxy_listed_as_its_ipv4_mapped_address_is_trusted(env, settings):
    loaded = load(
        {
            **env,
            "THRESHOLD_BEHIND_TLS_PROXY": "1",
            "THRESHOLD_TRUSTED_PROXIES": "::ffff:10.0.0.5",
        }
    )
    settings.THRESHOLD = dataclasses.replace(
        settings.THRESHOLD, proxy_ssl_header=True, trusted_proxies=loaded.trusted_proxies
    )
    peer = "::ffff:10.0.0.5"
    assert is_trusted_proxy(peer)
    assert client_address({"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": CLIENT}) == CLIENT


def test_a_proxy_flag_with_no_proxy_on_this_machine_is_warned_of(env):
    """An upgrade from before THRESHOLD_TRUSTED_PROXIES, with the proxy on another host: its
    headers are ignored now, and start-up says so."""
    env = {**env, "THRESHOLD_BEHIND_TLS_PROXY": "1"}
    assert not any("TRUSTED_PROXIES" in w for w in start_up_warnings(load(env)))
    remote = load({**env, "THRESHOLD_HOST": "0.0.0.0"})  # noqa: S104 - what is tested
    assert any("THRESHOLD_TRUSTED_PROXIES" in w for w in start_up_warnings(remote))
    listed = load({**env, "THRESHOLD_HOST": "0.0.0.0", "THRESHOLD_TRUSTED_PROXIES": "10.0.0.5"})  # noqa: S104
    assert not any("TRUSTED_PROXIES" in w for w in start_up_warnings(listed))


@pytest.mark.parametrize("origin", ["https://Parent.example", "https://parent.example:443"])
def test_top_origins_are_written_as_browsers_send_them(env, origin):
    env = {**env, "THRESHOLD_ALLOW_CROSS_ORIGIN": "1", "THRESHOLD_TOP_ORIGINS": origin}
    with pytest.raises(ConfigError, match="write it as browsers send it"):
        load(env)
    assert load({**env, "THRESHOLD_TOP_ORIGINS": "https://parent.example"}).rp.top_origins
