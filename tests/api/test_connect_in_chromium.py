"""The hosted connect pages in a real browser: headless Debian Chromium via ChromeDriver.

A user opens the link, presses Continue, allows access at the sandbox provider and
lands on our success page; a BYOK user types a key into the form. No JavaScript is
needed anywhere (Chromium runs with JavaScript disabled).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from agentauth.v1 import connection_pb2 as pb

from tests.api.connect_helpers import connect_world

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REQUIRED = os.environ.get("AGENTAUTH_TEST_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if REQUIRED:
            pytest.fail("chromium and chromedriver are required (apt-get install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="agentauth-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={profile}", "--no-first-run"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}  # no JavaScript
    )
    d = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def _do(fn: Any, *args: Any) -> Any:
    # WebDriver calls block; the control plane answers on this test's event loop.
    return await asyncio.to_thread(fn, *args)


async def _click(d: Any, selector: str) -> None:
    """Click a submit button and wait until the browser has left the page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    element = await _do(d.find_element, By.CSS_SELECTOR, selector)
    await _do(element.click)

    def gone(_: Any) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # stale, or no longer in any document
            return True
        return False

    await _do(WebDriverWait(d, 20).until, gone)


async def _result(d: Any) -> tuple[str, str]:
    """The result of the page that has (or is about to have) loaded: (kind, message)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def read(driver: Any) -> tuple[str, str] | bool:
        element = driver.find_element(By.ID, "result")
        return element.get_attribute("data-result"), element.text

    wait = WebDriverWait(d, 20, ignored_exceptions=(WebDriverException,))
    found: tuple[str, str] = await _do(wait.until, read)
    return found


async def test_oauth_connect_in_chromium(harness: Any, driver: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account(label="work")
        link = await w.link(acct)
        await _do(driver.get, link)
        assert "Connect Gmail" in await _do(lambda: driver.title)
        await _click(driver, "#continue")  # our page -> 303 -> the provider's consent page
        assert "(sandbox)" in await _do(lambda: driver.page_source)
        await _click(driver, 'button[value="allow"]')  # provider -> our callback
        result, message = await _result(driver)
        assert result == "success" and "Gmail is connected" in message
        url = await _do(lambda: driver.current_url)
        assert url.startswith(harness.http + "/oauth/callback?")
        got = (await w.admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=acct.name))).connected_account
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
        # Back to the spent link: a clean refusal, not a second connection.
        await _do(driver.get, link)
        assert (await _result(driver))[0] == "failure"


async def test_byok_entry_in_chromium(harness: Any, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    async with connect_world(harness, "gmail") as w:
        await w.admin.connections.UpdateConnectorConfig(pb.UpdateConnectorConfigRequest(
            name=f"{w.org}/connectors/stripe", enabled=True))
        acct = (await w.admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=w.org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=w.names["user"])))).connected_account
        await _do(driver.get, await w.link(acct))
        field = await _do(driver.find_element, By.ID, "api_key")
        await _do(field.send_keys, "not-a-stripe-key")
        await _click(driver, "#save")
        problem = await _do(driver.find_element, By.ID, "problem")
        assert "format" in await _do(lambda: problem.text)
        field = await _do(driver.find_element, By.ID, "api_key")
        await _do(field.send_keys, "rk_test_TypedInChromium0042")
        await _click(driver, "#save")
        result, _ = await _result(driver)
        assert result == "success"
        assert "rk_test_TypedInChromium0042" not in await _do(lambda: driver.page_source)
        got = (await w.admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=acct.name))).connected_account
        assert got.api_key_hint == "••••0042" and got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
