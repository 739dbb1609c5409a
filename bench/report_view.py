"""Look at a run's HTML report as a browser draws it: `textlstm report RUN`, then a full-page
screenshot in headless Chromium (`apt-get install chromium`) with the network switched off, so
a page that needed anything from outside would show it missing. Look at the PNG it writes.

Run: .venv/bin/python bench/report_view.py runs/demo/bbc-news/latest [--out /tmp/report-view]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "report-view")
    parser.add_argument("--height", type=int, default=4200, help="screenshot height in pixels")
    args = parser.parse_args()

    from textlstm.report.page import write_report

    args.out.mkdir(parents=True, exist_ok=True)
    page = args.out / f"report-{args.split}.html"
    written = write_report(args.run, args.split, output=page)
    print(
        f"report: {written.path} ({written.path.stat().st_size / 1024:.0f} KiB), accuracy "
        f"{written.accuracy:.2%}, ECE {written.ece:.4f}"
    )
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("no Chromium found: apt-get install chromium, then run this again", file=sys.stderr)
        return 2
    shot = args.out / f"report-{args.split}.png"
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # no network at all
        f"--screenshot={shot}", f"--window-size=1200,{args.height}", page.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not shot.is_file():
        print(f"{browser} failed ({done.returncode}): {done.stderr[-500:]}", file=sys.stderr)
        return 1
    print(f"screenshot: {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
