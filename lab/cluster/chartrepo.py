"""Build a Helm chart repository (the packaged charts and `index.yaml`) from a directory of charts.

The charts are the real ones `lab.charts` finds (`lab.up` hands the control plane a copy); the
index is written by real `helm repo index`. The result is a plain directory: any static HTTP
server (e.g. `python -m http.server`) serving it at `url` is a chart repository `helm repo add`
accepts.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEFAULT_HELM = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "helm"


def build(out: Path, url: str, charts: Path, helm: str | Path = DEFAULT_HELM) -> list[Path]:
    """Copy every packaged chart (`*.tgz`) of `charts` into `out` (dropping others there), then write
    `out/index.yaml` with download URLs under `url`. Returns the archives in `out`."""
    sources = sorted(charts.glob("*.tgz"))
    if not sources:
        raise FileNotFoundError(f"no packaged chart (*.tgz) in {charts}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in set(out.glob("*.tgz")) - {out / s.name for s in sources}:
        stale.unlink()
    archives = [Path(shutil.copyfile(source, out / source.name)) for source in sources]
    subprocess.run([str(helm), "repo", "index", str(out), "--url", url], capture_output=True, text=True, check=True)
    return archives
