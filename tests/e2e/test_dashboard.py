"""The dashboard in a real headless Chromium (Debian's, through its chromedriver): sign
in, the overview, a function's charts with data, log search and live tail, the model
volume, sign out; and every page and data endpoint refused without a session.

Screenshots go to the test's temporary directory, and to docs/screenshots/ when
MLAMBDA_SCREENSHOTS=1 (how the README's pictures are made)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from mlambda.client import Client
from tests.conftest import ROOT, Server, start_server, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = ["/dashboard/", "/dashboard/models", "/dashboard/functions/faulty",
         "/dashboard/functions/nope"]
DATA = ["/dashboard/api/functions", "/dashboard/api/functions/faulty",
        "/dashboard/api/metrics/overview", "/dashboard/api/metrics?function=faulty",
        "/dashboard/api/logs?function=faulty", "/dashboard/api/models", "/dashboard/api/cost",
        "/dashboard/api/keys"]
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
                    "referrer-policy")

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                                reason="needs Debian's chromium and chromium-driver "
                                       "(.ci/run installs them)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("dashboard"), env={"MLAMBDA_METRICS_FLUSH_S": "1"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(driver: WebDriver, tmp: Path, name: str) -> None:
    """The whole page (up to 2000 px tall) at the window's width."""
    size = driver.get_window_size()
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(size["width"], min(2000, max(size["height"], height + 120)))
    driver.execute_script("window.scrollTo(0, 0)")
    path = tmp / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    if os.environ.get("MLAMBDA_SCREENSHOTS"):
        shutil.copyfile(path, ROOT / "docs" / "screenshots" / f"{name}.png")


def problems(driver: WebDriver) -> list[dict[str, Any]]:
    """Severe console messages: a CSP violation, a script error, a failed request."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def rows(driver: WebDriver, css: str) -> list[list[str]]:
    """The cells' text of the rows `css` selects, read at once (the page redraws them)."""
    return list(driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(r => [...r.children].map(c => c.textContent))", css))


def texts(driver: WebDriver, css: str) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css))


def click(driver: WebDriver, by: str, what: str) -> None:
    def clicked() -> bool:
        try:
            driver.find_element(by, what).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(clicked, 10, f"to click {what}")


def invoke(server: Server, what: str) -> None:
    with server.client() as c:
        r = c.post("/2015-03-31/functions/faulty:live/invocations", json={"do": what})
    assert r.status_code == 200, r.text


def test_without_a_session_every_page_and_data_endpoint_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30, cookies={"mlambda_session": "forged"},
                      follow_redirects=False) as c:
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/dashboard/signin", path
            assert all(h in r.headers for h in SECURITY_HEADERS), path
        for path in DATA:
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["errorType"] == "UnauthorizedException", path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert c.post("/dashboard/api/logs").status_code == 401
        # an API key is not a session either
        assert c.get("/dashboard/api/functions",
                     headers={"x-api-key": server.admin_key}).status_code == 401


def test_sign_in_needs_the_csrf_token_same_origin_and_an_admin_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        form = c.get("/dashboard/signin")
        assert form.status_code == 200
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert "<script>" not in form.text and " style=" not in form.text  # no inline code
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        cookie = form.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        for key, csrf, headers, status in (
            (server.admin_key, None, {}, 403),  # no token
            (server.admin_key, "wrong", {}, 403),
            (server.admin_key, "", {"origin": "http://evil.example"}, 403),
            (server.invoke_key, "", {}, 401),  # not an admin key
        ):
            data = {"key": key, **({} if csrf is None else {"csrf": csrf or token})}
            r = c.post("/dashboard/signin", data=data, headers=headers)
            assert r.status_code == status, (data, headers, r.text)
            assert "mlambda_session" not in c.cookies
            token = r.text.split('name="csrf" value="')[1].split('"')[0]  # a new form
        r = c.post("/dashboard/signin", data={"key": server.admin_key, "csrf": token},
                   headers={"origin": server.url})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
        session = next(h for h in r.headers.get_list("set-cookie") if "mlambda_session=" in h)
        assert "HttpOnly" in session and "SameSite=Strict" in session
        assert c.get("/dashboard/api/functions").status_code == 200
        # sign-out is a state change too: it needs the session's CSRF token
        assert c.post("/dashboard/signout", data={"csrf": "wrong"}).status_code == 403
        assert c.get("/dashboard/api/functions").status_code == 200
        page = c.get("/dashboard/")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        assert c.post("/dashboard/signout", data={"csrf": csrf}).status_code == 303
        assert c.get("/dashboard/api/functions").status_code == 401


def test_static_files_are_fingerprinted_cached_and_compressed(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
        form = c.get("/dashboard/signin").text
        script = form.split('<script src="')[1].split('"')[0]
        assert script.startswith("/dashboard/static/dashboard.js?v=")
        plain = c.get(script, headers={"accept-encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert plain.headers["content-type"].startswith("text/javascript")
        packed = c.get(script, headers={"accept-encoding": "gzip, br"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.content == plain.content  # httpx undid the gzip
        assert int(packed.headers["content-length"]) < len(plain.content) / 2
        # under any other URL: kept only after asking again, and not sent twice
        stale = c.get("/dashboard/static/dashboard.js?v=0123456789abcdef")
        assert stale.headers["cache-control"] == "no-cache"
        again = c.get("/dashboard/static/dashboard.js",
                      headers={"if-none-match": stale.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        for path in ("/dashboard/static/nope.js", "/dashboard/static/%2e%2e/app.py",
                     "/dashboard/static/vendor/%2e%2e/%2e%2e/app.py"):
            assert c.get(path).status_code == 404, path
        # the data, gzipped for a browser that takes it
        token = form.split('name="csrf" value="')[1].split('"')[0]
        c.post("/dashboard/signin", data={"key": server.admin_key, "csrf": token})
        r = c.get("/dashboard/api/metrics", params={"function": "echo", "since": "1h"},
                  headers={"accept-encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert r.json()["function"] == "echo"


def test_the_dashboard_in_chromium(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    marker = "quokka" + secrets.token_hex(4)
    for _ in range(3):
        invoke(server, marker)
    invoke(server, "raise")

    browser.get(server.url + "/dashboard/")
    wait_for(lambda: browser.current_url.endswith("/dashboard/signin"), 10, "the sign-in form")
    shot(browser, tmp_path, "signin")
    browser.find_element(By.ID, "key").send_keys(server.admin_key)
    browser.find_element(By.ID, "signin").click()

    # the overview: a row per function, numbers from the metrics
    def faulty_row() -> list[str] | None:
        for cells in rows(browser, "#overview tbody tr"):
            if cells[0] == "faulty" and cells[2] not in ("", "–", "0"):
                return cells
        return None

    cells = wait_for(faulty_row, 20, "the overview's row for faulty with its errors")
    assert float(cells[1]) > 0  # requests/s over the last minute
    assert cells[2] == "1"  # the one invocation that raised
    names = {cells[0] for cells in rows(browser, "#overview tbody tr")}
    assert {"echo", "faulty", "handwriting"} <= names
    cost = wait_for(lambda: rows(browser, "#cost tbody tr"), 10, "the cost table")
    assert cost[0][0] == "AWS Lambda + API Gateway"
    assert cost[-1][0].startswith("This machine (")
    assert "requests" in browser.find_element(By.ID, "cost-note").text
    shot(browser, tmp_path, "overview")

    # a function: charts with data, aliases and versions
    click(browser, By.LINK_TEXT, "faulty")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#chart-invocations canvas"), 15,
             "the invocations chart")
    total = wait_for(lambda: float(browser.find_element(By.ID, "chart-invocations")
                                   .get_attribute("data-total") or 0) >= 4, 30,
                     "the chart to hold the four invocations")
    assert total
    assert float(browser.find_element(By.ID, "chart-errors").get_attribute("data-total")) >= 1
    for cid in ("errors", "duration", "concurrency", "coldstarts", "batch"):
        assert browser.find_elements(By.CSS_SELECTOR, f"#chart-{cid} canvas"), cid
    # the page marks when its first view was complete (what bench/dashboard_load.py times)
    ready = wait_for(lambda: browser.execute_script(
        "return performance.getEntriesByName('mlambda:ready').map(e => e.startTime)"), 10,
        "the page's ready mark")
    assert len(ready) == 1 and ready[0] > 0
    alias = wait_for(lambda: rows(browser, "#aliases tbody tr"), 10, "the aliases table")
    assert alias[0] == ["live", "1", "–", "100%"]
    browser.find_element(By.CSS_SELECTOR, '[data-range="24h"]').click()
    wait_for(lambda: "Last 24h" in browser.find_element(By.ID, "chart-status").text, 10,
             "the 24 h range")

    # logs: a search finds the handler's line; the live tail shows a new invocation
    browser.find_element(By.ID, "log-filter").send_keys(marker)
    browser.find_element(By.CSS_SELECTOR, "#log-search button[type=submit]").click()
    found = wait_for(lambda: [t for t in texts(browser, "#logs pre")
                              if f"faulty: doing {marker}" in t], 10, "the search result")
    assert len(found) == 3 and all("REPORT RequestId:" in t for t in found)
    shot(browser, tmp_path, "function")
    browser.find_element(By.ID, "log-filter").clear()
    browser.find_element(By.ID, "log-tail").click()
    wait_for(lambda: "Live tail:" in browser.find_element(By.ID, "log-status").text, 10,
             "the live tail to start")
    later = "wombat" + secrets.token_hex(4)
    invoke(server, later)
    wait_for(lambda: any(f"faulty: doing {later}" in t for t in texts(browser, "#logs pre")), 15,
             "the live tail to show the new invocation")
    browser.find_element(By.ID, "log-tail").click()

    # on a phone: one column, nothing wider than the screen
    browser.set_window_size(390, 844)
    wait_for(lambda: browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), 10,
        "the page to fit a phone's width")
    shot(browser, tmp_path, "function-phone")
    browser.set_window_size(1280, 1000)
    browser.execute_script("window.scrollTo(0, 0)")

    # the model volume
    click(browser, By.LINK_TEXT, "Models")
    wait_for(lambda: texts(browser, ".model h2") == ["handwriting"], 10, "the handwriting model")
    assert texts(browser, ".model p")[0].startswith("Current: ")
    shot(browser, tmp_path, "models")
    assert problems(browser) == []

    # sign out: the session is gone, pages send the browser back to the sign-in form
    browser.find_element(By.ID, "signout").click()
    wait_for(lambda: browser.current_url.endswith("/dashboard/signin"), 10, "signed out")
    browser.get(server.url + "/dashboard/functions/faulty")
    wait_for(lambda: browser.current_url.endswith("/dashboard/signin"), 10,
             "the redirect to sign-in")
    assert problems(browser) == []


def test_a_session_ends_when_its_key_is_disabled(server: Server) -> None:
    with Client(server.url, server.admin_key) as admin:
        created = admin.create_key("dash-" + secrets.token_hex(3), "admin")
        secret = created["secret"]
        with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as c:
            form = c.get("/dashboard/signin").text
            token = form.split('name="csrf" value="')[1].split('"')[0]
            r = c.post("/dashboard/signin", data={"key": secret, "csrf": token})
            assert r.status_code == 303
            assert c.get("/dashboard/api/functions").status_code == 200
            admin.disable_key(created["id"])
            r = c.get("/dashboard/api/functions")
            assert r.status_code == 401, r.text
            assert c.get("/dashboard/").headers["location"] == "/dashboard/signin"
