"""Authentication: the raw token in ``Authorization``; nothing ever records its value."""

from __future__ import annotations

import io

import pytest
import requests

from tests.emulator.helpers import INGEST, PRODUCTS, body, product


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "Missing Authorization header"), ("not-the-token", "Invalid API token")],
    ids=["missing", "wrong"],
)
def test_missing_or_wrong_token_is_401(api, token, message):
    r = api.ingest([product()], token=token)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "DI_E_20001", "category": "AUTHENTICATION", "message": message}}
    assert api.emulator.rows(PRODUCTS) == []


def test_bearer_form_is_rejected(api):
    r = api.ingest([product()], token=f"Bearer {api.emulator.token}")
    assert r.status_code == 401
    assert "without a 'Bearer ' prefix" in r.json()["error"]["message"]


def test_auth_is_checked_before_the_body(api):
    r = api.post(INGEST + PRODUCTS, data=b"{not json", token="wrong")
    assert r.status_code == 401


def test_every_configured_token_is_accepted(peak_emulator_factory, make_api):
    emu = peak_emulator_factory(tokens=["first", "second"])
    api = make_api(emu)
    assert api.ingest([product()], token="first").status_code == 200
    assert api.ingest([product(product_id="P2")], token="second").status_code == 200
    assert api.ingest([product()], token="third").status_code == 401


@pytest.mark.parametrize("path", ["/api/v2/schema/solutions", "/api/v2/schema?solutionName=INV_OOTB"])
def test_schema_calls_need_the_token(api, path):
    assert api.get(path, token=None).status_code == 401
    assert api.get(path, token="nope").status_code == 401
    assert api.get(path).status_code == 200


def test_the_token_never_leaks_into_logs_stats_or_responses(peak_emulator_factory):
    secret = "s3cr3t-token-value"
    log = io.StringIO()
    emu = peak_emulator_factory(tokens=[secret], access_log=log)
    headers = {"Authorization": secret}
    with requests.Session() as s:
        ok = s.post(emu.url + INGEST + PRODUCTS, json=body([product()]), headers=headers, timeout=5)
        bad = s.post(emu.url + INGEST + PRODUCTS, json=body([product()]), headers={"Authorization": secret + "x"})
        control = s.get(emu.url + "/_emulator/requests").text + s.get(emu.url + "/_emulator/stats").text
    assert ok.status_code == 200 and bad.status_code == 401
    everything = log.getvalue() + repr(emu.request_log()) + repr(emu.stats()) + ok.text + bad.text + control
    assert secret not in everything
    assert secret not in repr(emu)
    assert log.getvalue().count("\n") == 2
    assert f"POST {INGEST}{PRODUCTS} 200 rows=1 bytes=" in log.getvalue()
