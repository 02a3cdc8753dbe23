"""What the Playwright + Chromium tests share: Debian's chromium, its arguments, where the
screenshots go. Importing this module skips the importing test module when Playwright or
Chromium is missing (``make test`` installs both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",  # the temporary CA is not in the browser's store
]

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - make test installs it
    pytest.skip("Debian chromium is not installed (make test installs it)", allow_module_level=True)


def launch(playwright: Any) -> Any:
    """Headless Debian chromium; screenshots go to ``ARTIFACTS``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
