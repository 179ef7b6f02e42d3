"""Write the small committed evidence store the CI test reads (tests/data/evidence_smoke/).

Runs notebook 01 at `smoke` into a fresh store with an empty cache (so every encoder is trained and every row
appended), then records the values the notebook glued. `tests/test_evidence.py` re-executes the notebook from
this store with an empty cache and checks that nothing trains and every glued value comes out the same.

    python scripts/make_test_store.py
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "evidence_smoke"


def main() -> int:
    from memlib.experiments.glance import glued_values
    from memlib.experiments.notebooks import execute

    if OUT.exists():
        shutil.rmtree(OUT)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEMLIB_RESULTS"] = str(OUT)
        os.environ["MEMLIB_CACHE"] = str(Path(tmp) / "cache")
        nb = ROOT / "notebooks" / "01_sslmem.ipynb"
        out = Path(tmp) / "01.ipynb"
        execute(nb, out, {"preset": "smoke", "device": "cpu", "seed": 0}, cwd=nb.parent)
        glued = {k: v for k, v in glued_values(out).items() if not k.startswith("fig_")}
    (OUT / "glued_01.json").write_text(json.dumps(glued, indent=1, sort_keys=True) + "\n")
    (OUT / ".lock").unlink(missing_ok=True)
    print(f"{OUT}: {sum(f.stat().st_size for f in OUT.rglob('*'))} bytes, {len(glued)} glued values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
