"""Chromium opens crafted share links: a visitor's text in a link is shown as plain text, never rendered as
Markdown or HTML (no link to another site inside the page, no request the page makes to it). The app, the
browser and the page helpers are tests/test_browser.py's."""
import urllib.parse

from test_browser import browser, served  # noqa: F401  (pytest fixtures: the served app, one Chromium)
from test_browser import expect

EVIL = {  # the link's modality value -> what the status shows of it, literally (values are cut at 40 characters)
    "**Server notice:** your session expired, [log in again](https://evil.example?next=x)": "'**Server notice:*",
    "![](http://evil.example?victim=1)": "'![](http://evil.example?victim=1)'",
    "<img src=http://evil.example/pixel.png>": "'<img src=",
}


def open_link(browser, base, m):  # noqa: F811
    """A fresh page on the link ``?src=unconditional&seed=1&m=<m>``; returns (page, addresses it asked for
    outside the app). Requests off the app's host are recorded and aborted."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    outside = []

    def guard(route):
        url = route.request.url
        if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
            return route.continue_()
        outside.append(url)
        return route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.goto(base + "?" + urllib.parse.urlencode({"src": "unconditional", "seed": "1", "m": m}))
    expect(page.locator("#status")).to_contain_text("could not be restored", timeout=30000)
    page.wait_for_timeout(1500)   # let anything the page would load start loading
    return page, outside


def test_malicious_share_links_show_plain_text(served, browser):  # noqa: F811
    for m, literal in EVIL.items():
        page, outside = open_link(browser, served, m)
        status = page.locator("#status")
        text = status.inner_text()
        assert page.locator("a[href*='evil.example']").count() == 0, m
        assert page.locator("img[src*='evil.example']").count() == 0, m
        assert status.locator("b, strong", has_text="Server notice").count() == 0, m   # no emphasis from the link
        assert status.locator("b", has_text="could not be restored").count() == 1   # the app's own emphasis
        assert literal in text, text                                               # the value, as typed
        assert not [u for u in outside if "evil.example" in u], outside
        assert not outside, outside                                                # no outside request at all
        page.context.close()
