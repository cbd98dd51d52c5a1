"""Browser test of the usage page (/ui) against a running gateway, in Debian's Chromium.

Loads /ui, is refused with a wrong token (the 401 in words), enters the real one, picks
bucket=hour then bucket=day, and checks that the chart is drawn (uPlot's canvas has painted
pixels and one series per group), that the table's totals row equals the `totals` of
`GET /v1/usage` for each unit with the same parameters, that each source's status is shown, that
the token is in sessionStorage only (not in the address, not in a cookie) and that the browser
logged no error (a Content-Security-Policy violation is one). Saves a screenshot for review.

Environment: URL (the gateway), TOKEN (a token with usage:read); SCREENSHOT (default
target/ui-screenshot.png), CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default
/usr/bin/chromedriver). Selenium uses that chromedriver and never downloads a browser or driver
(SE_OFFLINE).
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

URL = os.environ["URL"].rstrip("/")
TOKEN = os.environ["TOKEN"]
SCREENSHOT = os.environ.get("SCREENSHOT", "target/ui-screenshot.png")
COUNTERS = ["input_tokens", "output_tokens", "other_tokens", "total_tokens"]

passed = 0


def check(what, ok, detail=""):
    """Counts one passed check, or stops the test naming what failed."""
    global passed
    if not ok:
        raise AssertionError(f"{what}: {detail}")
    passed += 1
    print(f"ok: {what}")


def api(params):
    """`GET /v1/usage` with the token, as JSON."""
    req = urllib.request.Request(
        f"{URL}/v1/usage?{urllib.parse.urlencode(params)}",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)


def wait_ready(d, bucket=None, unit=None):
    """Waits until the page has drawn an answer (with this bucket and unit, when given)."""

    def ready(d):
        state = d.find_element(By.ID, "main").get_attribute("data-state")
        if state == "problem":
            raise AssertionError("the page shows a problem: " + d.find_element(By.ID, "problem").text)
        if state != "ready":
            return False
        result = d.find_element(By.ID, "result")
        return (bucket is None or result.get_attribute("data-bucket") == bucket) and (
            unit is None or result.get_attribute("data-unit") == unit
        )

    WebDriverWait(d, 60, poll_frequency=0.2).until(ready)


def painted_pixels(d):
    """Pixels of uPlot's canvas that are not transparent or white."""
    return d.execute_script(
        """
        const c = document.querySelector('#chart canvas');
        if (!c) return -1;
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) {
          if (px[i + 3] > 0 && !(px[i] > 250 && px[i + 1] > 250 && px[i + 2] > 250)) n++;
        }
        return n;
        """
    )


def main():
    d = driver()
    try:
        d.get(f"{URL}/ui")
        WebDriverWait(d, 30).until(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-state") == "signed-out"
        )
        check("the page loads without a token", "Usage" in d.title, d.title)

        # A wrong token: the 401 problem in words, no result.
        d.find_element(By.ID, "token").send_keys("not-a-token")
        d.find_element(By.ID, "use-token").click()
        WebDriverWait(d, 30).until(
            lambda d: d.find_element(By.ID, "main").get_attribute("data-state") == "problem"
        )
        problem = d.find_element(By.ID, "problem").text
        check("a refused token is explained", "401" in problem and "token" in problem, problem)

        d.find_element(By.ID, "token").send_keys(TOKEN)
        d.find_element(By.ID, "use-token").click()
        wait_ready(d)
        bucket = Select(d.find_element(By.ID, "bucket"))
        bucket.select_by_value("hour")
        wait_ready(d, bucket="hour")
        bucket.select_by_value("day")
        wait_ready(d, bucket="day", unit="tokens")

        stored = d.execute_script("return sessionStorage.getItem('usage-gateway.token')")
        check("the token is in sessionStorage", stored == TOKEN)
        check(
            "the token is in neither the address nor a cookie",
            TOKEN not in d.current_url and d.execute_script("return document.cookie") == "",
            d.current_url,
        )

        result = d.find_element(By.ID, "result")
        echo = {k: result.get_attribute(f"data-{k}") for k in ["start", "end", "tz", "group"]}
        answer = api(
            {
                "start": echo["start"],
                "end": echo["end"],
                "tz": echo["tz"],
                "bucket": "day",
                "group_by": echo["group"],
                "fill": "zero",
                "bucket_edges": "local",
            }
        )
        units = [t["unit"] for t in answer["totals"]]
        check("the demo answers tokens and credits", {"tokens", "credits"} <= set(units), units)

        for unit in sorted(units, key=lambda u: u != "tokens"):
            if unit != "tokens":
                d.find_element(By.CSS_SELECTOR, f'#unit-choices input[value="{unit}"]').click()
                wait_ready(d, bucket="day", unit=unit)
            groups = {r[echo["group"]] for r in answer["rows"] if r["unit"] == unit}
            series = d.execute_script("return document.querySelectorAll('#chart .u-legend .u-series').length")
            check(
                f"{unit}: the chart has one series per group",
                series == 1 + min(len(groups), 8),
                f"{series} legend rows for {len(groups)} groups",
            )
            pixels = painted_pixels(d)
            check(f"{unit}: the chart's canvas is drawn", pixels > 2000, f"{pixels} painted pixels")
            totals = next(t for t in answer["totals"] if t["unit"] == unit)
            shown = {
                td.get_attribute("data-counter"): int(td.get_attribute("data-value"))
                for td in d.find_elements(By.CSS_SELECTOR, "#table tfoot td[data-counter]")
            }
            check(
                f"{unit}: the table's totals equal /v1/usage's totals",
                shown == {c: totals[c] for c in COUNTERS},
                f"page {shown}, API {totals}",
            )
            if "cost" in totals:
                # The demo prices every source (price table or vendor): the footer shows the
                # API's exact per-currency totals, never a sum made in the browser.
                want = "; ".join(f"{m['amount']} {m['currency']}" for m in totals["cost"])
                cost = d.find_element(By.CSS_SELECTOR, "#table tfoot td[data-cost]").text
                check(f"{unit}: the table's cost total is /v1/usage's", cost.startswith(want), f"page {cost!r}, API {want!r}")
            rows = len(d.find_elements(By.CSS_SELECTOR, "#table tbody tr"))
            expected = sum(1 for r in answer["rows"] if r["unit"] == unit)
            check(f"{unit}: the table has the answer's rows", rows == expected, f"{rows} != {expected}")

        listed = {
            li.get_attribute("data-source"): li.get_attribute("data-status")
            for li in d.find_elements(By.CSS_SELECTOR, "#source-list li")
        }
        check(
            "each source's status is shown",
            listed == {s["source"]: s["status"] for s in answer["sources"]},
            listed,
        )
        csv = d.find_element(By.ID, "csv").get_attribute("href")
        check("the CSV link holds the shown table", csv.startswith("blob:"), csv)

        # Back to tokens for the screenshot.
        d.find_element(By.CSS_SELECTOR, '#unit-choices input[value="tokens"]').click()
        wait_ready(d, bucket="day", unit="tokens")
        # The wrong token's 401 is expected; anything else (a CSP violation, a script error, a
        # missing file) is not.
        errors = [
            e
            for e in d.get_log("browser")
            if e["level"] == "SEVERE" and "status of 401" not in e["message"]
        ]
        check("the browser logged no error (no CSP violation)", not errors, errors)
    finally:
        # Also after a failure: the page as it was then.
        d.save_screenshot(SCREENSHOT)
        print(f"screenshot: {SCREENSHOT}")
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, urllib.error.URLError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        print(f"ui: {passed} passed, 1 failed")
        sys.exit(1)
    print(f"ui: {passed} passed, 0 failed")
