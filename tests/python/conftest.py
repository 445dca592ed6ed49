"""Fixtures for driving a running Switchyard gateway with the official OpenAI and Anthropic SDKs.

The harness that runs this suite starts the gateway and its mock upstreams and passes:

- SWITCHYARD_URL: the gateway's base URL, e.g. http://127.0.0.1:40123 (no trailing slash needed)
- SWITCHYARD_KEY: a valid team key

Both are required: a test that needs them fails (it is not skipped) when they are missing.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import anthropic
import openai
import pytest

TIMEOUT_SECONDS = 20
WRONG_KEY = "sk-switchyard-this-key-is-wrong"

# Environment variables the SDKs read that could change what they send (extra headers) or
# where (proxies). The suite must talk to the gateway directly with exactly the given key.
for _name in ("OPENAI_CUSTOM_HEADERS", "ANTHROPIC_CUSTOM_HEADERS"):
    os.environ.pop(_name, None)


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            f"{name} is not set: this suite needs a running Switchyard gateway "
            "(SWITCHYARD_URL, e.g. http://127.0.0.1:4000, and SWITCHYARD_KEY, a team key)",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def gateway_url() -> str:
    url = _required_env("SWITCHYARD_URL").rstrip("/")
    # Never send the gateway's traffic through a proxy from the environment.
    host = urlsplit(url).hostname or ""
    for var in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(var, "")
        if host not in current.split(","):
            os.environ[var] = ",".join(filter(None, [current, host]))
    return url


@pytest.fixture(scope="session")
def gateway_key() -> str:
    return _required_env("SWITCHYARD_KEY")


def _openai(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=TIMEOUT_SECONDS)


def _anthropic(url: str, key: str) -> anthropic.Anthropic:
    # The SDK posts to {base_url}/v1/messages.
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def openai_client(gateway_url: str, gateway_key: str) -> openai.OpenAI:
    return _openai(gateway_url, gateway_key)


@pytest.fixture(scope="session")
def anthropic_client(gateway_url: str, gateway_key: str) -> anthropic.Anthropic:
    return _anthropic(gateway_url, gateway_key)


@pytest.fixture(scope="session")
def openai_client_wrong_key(gateway_url: str) -> openai.OpenAI:
    return _openai(gateway_url, WRONG_KEY)


@pytest.fixture(scope="session")
def anthropic_client_wrong_key(gateway_url: str) -> anthropic.Anthropic:
    return _anthropic(gateway_url, WRONG_KEY)
