"""Build a Helm chart repository (the packaged charts and `index.yaml`) from the stand-in chart.

The result is a plain directory: any static HTTP server (e.g. `python -m http.server`) serving it
at `url` is a chart repository `helm repo add` accepts.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parents[2]
STAND_IN_CHART = REPO / "lab" / "charts" / "binderhub"
DEFAULT_HELM = REPO / ".tools" / "bin" / "helm"


def package(chart: Path, destination: Path, version: str | None = None,
            helm: str | Path = DEFAULT_HELM) -> Path:
    """`helm package` the chart (optionally under another version); return the archive's path."""
    argv = [str(helm), "package", str(chart), "--destination", str(destination)]
    if version:
        argv += ["--version", version]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    # helm prints: "Successfully packaged chart and saved it to: /path/name-version.tgz"
    return Path(output.strip().rsplit(": ", 1)[1])


def build(out: Path, url: str, chart: Path = STAND_IN_CHART, extra_versions: Iterable[str] = (),
          helm: str | Path = DEFAULT_HELM) -> list[Path]:
    """Package the chart at its own version and each of `extra_versions` into `out`, then write
    `out/index.yaml` with download URLs under `url`. Returns the archives."""
    out.mkdir(parents=True, exist_ok=True)
    archives = [package(chart, out, helm=helm)]
    archives += [package(chart, out, version, helm) for version in extra_versions]
    subprocess.run([str(helm), "repo", "index", str(out), "--url", url],
                   capture_output=True, text=True, check=True)
    return archives
