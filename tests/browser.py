"""Headless Chromium for the report tests: render a file:// page, log every network request.

Debian's ``chromium`` is installed with apt-get when it is missing and we are root (CI runs on a
fresh machine as root); elsewhere the tests skip, except in CI where a missing browser fails.
Each page is loaded with a network log (``--log-net-log``): any request the *page* made (its
network isolation key is ``file://``) to a non-file URL is reported, so a report that fetches a
script, a font or an image from anywhere fails. Chromium's own background traffic (updates,
time sync) has another isolation key and is ignored.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
)  # fmt: skip
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:")


@functools.cache
def chromium() -> str:
    """The chromium binary; installs Debian's package first when missing (root only, once)."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=False,
            env=env,
            capture_output=True,
        )
        found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            raise RuntimeError("chromium is missing and could not be installed; CI requires it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


@dataclass
class Rendered:
    dom: str
    requests: list[str]

    @property
    def errors(self) -> str:
        match = re.search(r'<html[^>]*\sdata-errors="([^"]*)"', self.dom)
        return match.group(1) if match else ""

    @property
    def rendered(self) -> int | None:
        match = re.search(r'<html[^>]*\sdata-rendered="(\d+)"', self.dom)
        return int(match.group(1)) if match else None

    def attribute_values(self, name: str) -> list[str]:
        return re.findall(rf'\s{name}="([^"]*)"', self.dom)


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for over the network."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params:
            continue
        from_page = str(params.get("network_isolation_key", "")).startswith("file://")
        if from_page and not str(params["url"]).startswith(LOCAL_SCHEMES):
            urls.append(str(params["url"]))
    return urls


def _run(
    binary: str, work: Path, extra: list[str], url: str, budget_ms: int
) -> tuple[str, list[str]]:
    net_log = work / "net-log.json"
    args = [
        binary, *FLAGS, f"--user-data-dir={work / 'profile'}", f"--log-net-log={net_log}",
        f"--virtual-time-budget={budget_ms}", *extra, url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, page_requests(net_log)


def render(page: Path, work: Path, *, fragment: str = "", budget_ms: int = 120_000) -> Rendered:
    """The page's DOM after its scripts ran (virtual time), and what it fetched."""
    work.mkdir(parents=True, exist_ok=True)
    url = page.resolve().as_uri() + fragment
    dom, requests = _run(chromium(), work, ["--dump-dom"], url, budget_ms)
    return Rendered(dom, requests)


def screenshot(
    page: Path,
    out: Path,
    work: Path,
    *,
    width: int = 1280,
    height: int = 2400,
    budget_ms: int = 120_000,
) -> list[str]:
    """A PNG of the page's first ``height`` pixels; returns what the page fetched."""
    work.mkdir(parents=True, exist_ok=True)
    extra = [f"--screenshot={out}", f"--window-size={width},{height}"]
    _, requests = _run(chromium(), work, extra, page.resolve().as_uri(), budget_ms)
    assert out.is_file(), "chromium wrote no screenshot"
    return requests


def blank_fraction(png: Path) -> float:
    """Share of pixels that are the page background (1.0 = a blank page)."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"))
    same = np.all(pixels == pixels[0, 0], axis=-1)
    return float(same.mean())
