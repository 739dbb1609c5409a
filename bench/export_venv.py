"""The README of an ONNX export, run as printed in a fresh virtual environment that holds only
what it installs (onnxruntime and numpy): no textlstm, no torch. Needs the package registry.

Usage: python bench/export_venv.py EXPORT_FOLDER
The folder (from `textlstm export RUN`) is copied to a scratch folder; each command of the README's
bash block runs there with bash, in order, with a PATH that holds no other Python environment.
The predictions are then compared with `textlstm predict` on the same texts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    source = Path(sys.argv[1]).resolve()
    readme = (source / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.S | re.M)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / source.name
        shutil.copytree(source, folder)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(Path.home())}
        env |= {k: v for k, v in os.environ.items() if k.startswith("PIP_")}  # the registry
        python = shutil.which("python3", path=env["PATH"]) or sys.exit("no system python3")
        outputs = []
        for command in [line for line in block.splitlines() if line.strip()]:
            command = re.sub(r"\s+#.*$", "", command).replace("python -m venv", f"{python} -m venv")
            print(f"$ {command}", flush=True)
            done = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            outputs.append(done.stdout)
        installed = subprocess.run(
            [str(folder / "venv" / "bin" / "pip"), "list", "--format", "json"],
            capture_output=True,
            text=True,
        )
        names = sorted(p["name"].lower() for p in json.loads(installed.stdout))
        print(f"the venv holds: {', '.join(names)}")
        assert not {"torch", "textlstm"} & set(names), names
        texts = folder / "texts.txt"
        ours = subprocess.run(
            [sys.executable, "-m", "textlstm", "predict", str(source), str(texts)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    theirs = [json.loads(line) for line in outputs[2].splitlines()]
    expected = [json.loads(line) for line in ours.splitlines()]
    same = [a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-4
            for a, b in zip(theirs, expected)]  # fmt: skip
    print(f"predict.py in the fresh venv: {len(theirs)} records; equal to textlstm predict "
          f"(label, score within 1e-4): {all(same) and len(theirs) == len(expected)}")  # fmt: skip
    if not all(same) or len(theirs) != len(expected):
        sys.exit(1)


if __name__ == "__main__":
    main()
