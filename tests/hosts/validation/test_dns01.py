"""dns-01 through pebble-challtestsrv as the resolver."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from hosts.validation.dns01 import validate_dns01

from .servers import KEYAUTH, SECRET, TXT_VALUE, config_for, problem_of

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.challtestsrv import ChallTestSrv

pytest_plugins = ["tests.challtestsrv"]


@pytest.mark.parametrize(
    ("domain", "record"),
    [
        ("x.devid.test", "_acme-challenge.x.devid.test"),
        ("*.w.devid.test", "_acme-challenge.w.devid.test"),
        ("Mixed.Devid.Test", "_acme-challenge.mixed.devid.test"),
    ],
)
async def test_dns01_success(challtestsrv: ChallTestSrv, domain: str, record: str) -> None:
    challtestsrv.set_txt(record, "some-other-value")
    challtestsrv.set_txt(record, TXT_VALUE)
    await validate_dns01(domain, KEYAUTH, config_for(challtestsrv))


async def test_dns01_follows_cname(challtestsrv: ChallTestSrv) -> None:
    """Delegating _acme-challenge to another zone with a CNAME is common practice."""
    challtestsrv.set_txt("_acme-challenge.validation.devid.test", TXT_VALUE)
    challtestsrv.set_cname(
        "_acme-challenge.delegated.devid.test", "_acme-challenge.validation.devid.test"
    )
    await validate_dns01("delegated.devid.test", KEYAUTH, config_for(challtestsrv))


async def test_dns01_wrong_value(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_txt("_acme-challenge.x.devid.test", "wrong-value")
    err = await problem_of(validate_dns01("x.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "incorrectResponse"
    assert "'wrong-value'" not in err.detail
    assert TXT_VALUE in err.detail


async def test_dns01_no_txt(challtestsrv: ChallTestSrv) -> None:
    err = await problem_of(validate_dns01("empty.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "dns"
    assert "no TXT record at _acme-challenge.empty.devid.test" in err.detail


# --- the fixture itself ----------------------------------------------------------------


async def test_challtestsrv_dns_hook(challtestsrv: ChallTestSrv, tmp_path: Path) -> None:
    """The lego/certbot hook script writes what validate_dns01 reads."""
    hook = challtestsrv.write_dns_hook(tmp_path / "hook")
    config = config_for(challtestsrv)
    await trio.run_process([str(hook), "present", "_acme-challenge.Hook.devid.test.", TXT_VALUE])
    await validate_dns01("hook.devid.test", KEYAUTH, config)
    await trio.run_process(
        [str(hook), "cleanup"], env={"CERTBOT_DOMAIN": "hook.devid.test", "PATH": "/usr/bin"}
    )
    err = await problem_of(validate_dns01("hook.devid.test", KEYAUTH, config))
    assert err.problem == "dns"


# --- what a failed validation tells the ACME client ------------------------------------


async def test_dns01_problem_does_not_echo_txt_records(challtestsrv: ChallTestSrv) -> None:
    challtestsrv.set_txt("_acme-challenge.x.devid.test", SECRET)
    err = await problem_of(validate_dns01("x.devid.test", KEYAUTH, config_for(challtestsrv)))
    assert err.problem == "incorrectResponse"
    assert "_acme-challenge.x.devid.test" in err.detail and TXT_VALUE in err.detail
    assert SECRET not in err.detail
