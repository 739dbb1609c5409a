"""The `textlstm` command with a gate in front of tuning trials, for tests that stop a study at a
known point instead of polling and hoping.

With ``TEXTLSTM_TEST_GATE=<folder>:<n>``, every trial numbered ``n`` or higher writes its number
to the named pipe ``<folder>/reached`` when it starts, then waits to open ``<folder>/release``,
which blocks until the test opens it for writing: no clock, no polling. With
``TEXTLSTM_TEST_GATE_AS_ERROR=1`` a stop (KeyboardInterrupt) that lands at the gate comes out as
a RuntimeError, as it does from libraries that catch it and raise their own error. The
patch sits at this file's top level, so the spawned worker processes of ``tune --jobs N``, which
import the parent's main file as ``__mp_main__``, get it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import textlstm.tuning.study as tuning

_GATE = os.environ.get("TEXTLSTM_TEST_GATE")

if _GATE:
    _folder, _, _first = _GATE.rpartition(":")
    _real_train = tuning.train

    def _gated_train(recipe, out, *args, **kwargs):  # type: ignore[no-untyped-def]
        number = int(Path(out).name)  # trials/<number>
        if number >= int(_first):
            with open(Path(_folder) / "reached", "w") as reached:  # the test holds it open
                reached.write(f"{number}\n")
            try:
                with open(Path(_folder) / "release") as release:  # blocks until released
                    release.read()
            except KeyboardInterrupt:
                if os.environ.get("TEXTLSTM_TEST_GATE_AS_ERROR"):
                    raise RuntimeError("Error: did not possess lock") from None
                raise
        return _real_train(recipe, out, *args, **kwargs)

    tuning.train = _gated_train

if __name__ == "__main__":
    from textlstm.cli import main

    main()
