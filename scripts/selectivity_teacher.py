"""A teacher file from the repository's history with its metadata inside (the oldest ones kept it in
the JSON sidecar only): the same tensors, re-saved with the sidecar's metadata by clareps.io.

    python scripts/selectivity_teacher.py RAW.safetensors RAW.json OUT.safetensors
"""

from __future__ import annotations

import json
import shutil
import sys

from safetensors import safe_open
from safetensors.torch import load_file

from clareps.io import HEADER_KEY, save_tensors


def main(raw: str, sidecar: str, out: str) -> None:
    with safe_open(raw, "pt") as fh:
        inside = HEADER_KEY in (fh.metadata() or {})
    if inside:  # already complete: copy as is
        shutil.copyfile(raw, out)
        shutil.copyfile(sidecar, out.removesuffix(".safetensors") + ".json")
        return
    meta = {k: v for k, v in json.load(open(sidecar)).items()
            if k not in ("tensors_sha256", "tensors_digest", "clareps_version")}
    save_tensors(out, load_file(raw), meta)


if __name__ == "__main__":
    main(*sys.argv[1:4])
