"""Headless Chromium for tests: Debian's `chromium` package driven by Playwright's driver (the
`playwright` wheel of the dev extra; no browser is ever downloaded).

    with browser_page() as page:
        page.goto(url)
        screenshot(page, tmp_path / "page.png")

Each page gets a fresh profile directory, removed afterwards, and Chromium runs without
anything that reaches out on its own (sync, updates, background networking, QUIC).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailable(RuntimeError):
    pass


def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if not found:
        raise BrowserUnavailable(
            f"no Chromium at {CHROMIUM}: install Debian's chromium package "
            "(scripts/ensure-system-packages.sh does, as part of `make test`)"
        )
    return found


@contextmanager
def browser_page(
    width: int = 1400, height: int = 1000, timeout_ms: float = 20_000
) -> Iterator[Any]:
    """A Playwright `Page` in a headless Chromium with a fresh profile; every wait on it
    times out after `timeout_ms`. Console errors of the page are kept in `page.errors`."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="modelops-chromium-") as profile, \
            sync_playwright() as playwright:  # fmt: skip
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": width, "height": height},
        )
        try:
            context.set_default_timeout(timeout_ms)
            page = context.pages[0] if context.pages else context.new_page()
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.on("console", lambda message: page.errors.append(message.text)
                    if message.type == "error" else None)  # fmt: skip
            yield page
        finally:
            context.close()


def screenshot(page: Any, path: Path | str, full_page: bool = True) -> Path:
    """Save what the page shows as a PNG; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=full_page)
    return target
