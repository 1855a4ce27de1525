"""What the console's browser tests share: sign-in, axe-core, screenshots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
SCREEN = {"width": 1400, "height": 900}


def sign_in(page: Page, base: str, token: str) -> None:
    """Sign in through the form, as a person would, and land on the catalog."""
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/console/datasets.*"))


def axe_check(page: Page, *, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run axe-core in the page; fail on any serious or critical violation."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => { const r = await axe.run(document); return r.violations; }"
    )
    bad = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result
        if v["impact"] in {"serious", "critical"} and v["id"] not in skip
    ]
    assert bad == [], json.dumps(bad, indent=2)
    return list(result)


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """A full-page PNG at the test's 1400x900 viewport."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
