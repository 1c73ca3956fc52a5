"""The operator console in a real browser: Debian's headless Chromium driven by Selenium
(never a downloaded browser). Sign in, watch a message arrive on the overview, filter the
queue, hold and release as an operator, be refused as a viewer, be refused without the CSRF
token, sign out. Screenshots of the queue page and the overview are saved (README's, with
`SGG_CONSOLE_SCREENSHOTS=docs`: docs/console.png and docs/console-overview.png).

Without Chromium the tests skip saying why; with `CI=true` they fail instead (`.ci/run`
installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gateway.emulator import (
    Emulator,
    EmulatorSettings,
    EmulatorUser,
    Faults,
    running_emulator,
)
from tests.conftest import Logged
from tests.e2e.test_console import MESSAGE
from tests.support.console import PASSWORDS, console_section
from tests.support.gateway import Running, make_config, run_gateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
T = TypeVar("T")


def _missing() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing: apt-get install -y {package}"
    try:
        import selenium  # noqa: F401, PLC0415 - only to say whether it is there
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return ""


def new_driver() -> Any:
    """A headless Debian Chromium, or skip (fail under CI) saying why not."""
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    from selenium import webdriver  # noqa: PLC0415 - optional until here
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        # The emulator's Entra ID (Sign in with Microsoft) has a test CA this browser does not
        # know; the console itself is plain HTTP on loopback.
        "--ignore-certificate-errors",
    ):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    browser.set_page_load_timeout(30)
    return browser


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module (each test starts with no cookies)."""
    browser = new_driver()
    try:
        yield browser
    finally:
        browser.quit()


class Page:
    """The browser, driven from a thread so the gateway on this loop keeps serving."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base

    async def run(self, action: Callable[[], T]) -> T:
        return await asyncio.to_thread(action)

    async def open(self, path: str) -> None:
        await self.run(lambda: self.driver.get(self.base + path))

    async def text(self, element_id: str) -> str:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return str(await self.run(lambda: self.driver.find_element(By.ID, element_id).text))

    async def body(self) -> str:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return str(await self.run(lambda: self.driver.find_element(By.TAG_NAME, "body").text))

    async def click(self, element_id: str) -> None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        await self.run(lambda: self.driver.find_element(By.ID, element_id).click())

    async def fill(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        def type_in() -> None:
            field = self.driver.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)

        await self.run(type_in)

    async def sign_in(self, username: str) -> None:
        await self.run(self.driver.delete_all_cookies)
        await self.open("/")  # sent to the sign-in page
        assert (await self.path()).startswith("/signin?next=")
        await self.fill("username", username)
        await self.fill("password", PASSWORDS[username])
        await self.click("signin")
        await self.arrive("/")
        assert await self.path() == "/", await self.body()

    async def arrive(self, expected: str) -> None:
        """Wait until the browser has loaded a page whose path starts with `expected` (a
        click on a form's button returns before the answer is in)."""
        from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

        def there(driver: Any) -> bool:
            path = str(driver.current_url).removeprefix(self.base)
            loaded = driver.execute_script("return document.readyState") == "complete"
            return path.startswith(expected) and loaded

        await self.run(lambda: WebDriverWait(self.driver, 15).until(there))

    async def path(self) -> str:
        """Where the browser is (asked from a thread: the gateway must keep serving)."""
        url = await self.run(lambda: str(self.driver.current_url))
        return url.removeprefix(self.base)


@pytest.fixture
async def console(
    tmp_path: Path, emulator: Emulator, driver: Any
) -> AsyncIterator[tuple[Running, Page]]:
    emulator.set_faults(Faults(outage_seconds=3600))  # mail stays queued
    config = make_config(
        tmp_path,
        emulator,
        console=console_section(),
        delivery={"retry_initial": "1h", "retry_max": "2h"},
    )
    async with run_gateway(config) as running:
        assert running.gateway.console is not None
        yield running, Page(driver, f"http://127.0.0.1:{running.gateway.console.port}")


async def send(running: Running, sender: str = "scanner@contoso.com") -> str:
    refused = await running.send(sender, ["alice@contoso.com"], MESSAGE)
    assert not refused
    event = await running.next_event()
    return event.queue_id


async def test_operator_signs_in_sees_mail_arrive_filters_holds_releases_signs_out(
    console: tuple[Running, Page], tmp_path: Path, logged: Logged
) -> None:
    running, page = console
    await page.sign_in("olga")
    assert await page.text("count-queued") == "0\nqueued"
    queue_id = await send(running)
    await send(running, sender="printer@sales.contoso.com")
    await page.open("/")
    assert await page.text("count-queued") == "2\nqueued"

    # Filter the queue by sender with the form.
    await page.click("link-queued")  # the count links to the queue, filtered by state
    await page.fill("filter-sender", "scanner@")
    await page.click("filter")
    await page.arrive("/queue?")
    assert "sender=scanner%40" in await page.path()
    assert await page.text("total") == "1 message, page 1 of 1"
    body = await page.body()
    assert queue_id in body and "printer@sales.contoso.com" not in body

    # Hold it from the list: select, confirm, done.
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    await page.run(
        lambda: page.driver.find_element(By.CSS_SELECTOR, f'input[value="{queue_id}"]').click()
    )
    await page.click("bulk-hold")
    await page.arrive("/queue/confirm")
    assert await page.path() == "/queue/confirm" and queue_id in await page.body()
    await page.click("confirm")
    await page.arrive("/queue")
    assert "hold: 1 done" in await page.body()
    assert await running.gateway.queue.state_of(queue_id) == "hold"

    # Release it from its own page.
    await page.open(f"/messages/{queue_id}")
    assert "held by an administrator" in await page.text("hold-reason")
    await page.click("action-release")
    await page.arrive("/queue/confirm")
    await page.click("confirm")
    await page.arrive("/messages/")
    assert await page.path() == f"/messages/{queue_id}"
    assert "release: 1 done" in await page.body()
    assert await running.gateway.queue.state_of(queue_id) in ("queue", "active")

    # The screenshots for README: the queue with both messages, and the overview.
    for path, name in (("/queue", "console.png"), ("/", "console-overview.png")):
        await page.open(path)
        shot = tmp_path / name
        await page.run(lambda shot=shot: page.driver.save_screenshot(str(shot)))
        assert shot.read_bytes().startswith(b"\x89PNG")
        folder = os.environ.get("SGG_CONSOLE_SCREENSHOTS")
        if folder:
            shutil.copyfile(shot, Path(folder) / name)

    await page.click("signout")
    await page.arrive("/signin")
    assert await page.path() == "/signin"
    await page.open("/queue")
    assert (await page.path()).startswith("/signin?next=")
    assert [a["action"] for a in logged("console_action")] == ["hold", "release"]


async def test_viewer_is_refused_and_a_form_without_csrf_token_is_refused(
    console: tuple[Running, Page], logged: Logged
) -> None:
    running, page = console
    queue_id = await send(running)

    await page.sign_in("vera")
    await page.open(f"/messages/{queue_id}")
    body = await page.body()
    assert "Scan from MFP-3F" in body and "Actions" not in body
    # A viewer who builds the operator's form anyway is refused.
    await page.run(lambda: page.driver.execute_script(_POST_FORM, "/queue/confirm", queue_id, True))
    await page.arrive("/queue/confirm")
    assert "Not allowed" in await page.body() and "viewer" in await page.body()
    assert await running.gateway.queue.state_of(queue_id) == "queue"

    # An operator's form that lost its CSRF token is refused too.
    await page.sign_in("olga")
    await page.open(f"/messages/{queue_id}")
    await page.run(lambda: page.driver.execute_script(_POST_FORM, "/queue/act", queue_id, False))
    await page.arrive("/queue/act")
    assert "security token is missing" in await page.body()
    assert await running.gateway.queue.state_of(queue_id) == "queue"
    assert [e["user"] for e in logged("console_refused")] == ["vera"]
    assert [e["user"] for e in logged("console_csrf_refused")] == ["olga"]


async def test_sign_in_with_microsoft_through_the_emulator(tmp_path: Path, logged: Logged) -> None:
    # A browser of its own, ended before the emulator stops (its TLS connections with it).
    driver = await asyncio.to_thread(new_driver)
    settings = EmulatorSettings(
        host="127.0.0.1",
        port=0,
        state_dir=tmp_path / "emulator",
        users=(EmulatorUser("olga@contoso.com", "contoso-tenant", roles=("Console.Operator",)),),
    )
    async with running_emulator(settings) as emulator:
        console = console_section(
            microsoft={"tenant": "contoso", "operators": ["Console.Operator"]}
        )
        config = make_config(tmp_path, emulator, console=console)
        async with run_gateway(config) as running:
            assert running.gateway.console is not None
            page = Page(driver, f"http://127.0.0.1:{running.gateway.console.port}")
            try:
                await page.open("/queue")
                assert (await page.path()).startswith("/signin?next=")
                await page.click("signin-microsoft")  # to Entra ID (the emulator) and back
                await page.arrive("/queue")
                body = await page.body()
            finally:
                await asyncio.to_thread(driver.quit)
            assert "olga@contoso.com (operator)" in body and "Queue" in body
    [signin] = logged("console_signin")
    assert (signin["user"], signin["via"]) == ("olga@contoso.com", "microsoft")


# Submit a delete form for one message, with the page's CSRF token or without one.
_POST_FORM = """
const [action, id, withToken] = arguments;
const form = document.createElement('form');
form.method = 'post';
form.action = action;
const fields = {operation: 'delete', id: id};
const token = document.querySelector('input[name=csrf]');
if (withToken && token) fields.csrf = token.value;
for (const [name, value] of Object.entries(fields)) {
  const input = document.createElement('input');
  input.type = 'hidden'; input.name = name; input.value = value;
  form.appendChild(input);
}
document.body.appendChild(form);
form.submit();
"""
