"""The dashboard's static files: served from the package, and nothing loaded from another host (offline)."""

from __future__ import annotations

import re

import pytest

from gridsim_gateway.routes.dashboard import STATIC_DIR

# The SVG namespace is an identifier, not a request.
_ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


@pytest.mark.parametrize("name", ["index.html", "app.js", "style.css", "favicon.svg"])
def test_static_file_requests_nothing_from_another_host(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text, flags=re.IGNORECASE))
    assert urls <= _ALLOWED_URLS, f"{name} refers to another host: {sorted(urls - _ALLOWED_URLS)}"


def test_page_refers_only_to_files_that_ship() -> None:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for ref in re.findall(r'(?:src|href)="/static/([^"]+)"', page):
        assert (STATIC_DIR / ref).is_file(), ref
