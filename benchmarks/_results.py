"""What every benchmark shares: the datasets shipped in ``benchmarks/data/``, the work folder under
the repo's git-ignored ``runs/bench/``, and ``benchmarks/results/NAME.json``, the committed record
of a run that the README's tables are rendered from (``benchmarks/render_readme.py``).

A results file holds the numbers and how they were made: fmal version, git commit (and whether the
tree had uncommitted changes), encoder backend and model fingerprint, the machine (cores the
process may use, CPU model, a measured peak fp32 matmul GFLOP/s), the date and the exact command.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data"
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "runs" / "bench"
DATASETS = ("trec6", "sms_spam", "rotten_tomatoes")

if str(REPO) not in sys.path:  # run as `python benchmarks/x.py` from a clone without installing fmal
    sys.path.insert(0, str(REPO))


def rel(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repo when it is inside it (results never hold machine paths)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return p.name if p.is_absolute() else str(p)


def dataset_csv(name: str) -> Path:
    """``runs/bench/data/NAME.csv``, unpacked from ``benchmarks/data/NAME.csv.gz`` (once; again when
    the archive changes). A path relative to the repo when the working folder is the repo, so that
    pool manifests and results name it the same on every clone."""
    src = DATA / f"{name}.csv.gz"
    if not src.is_file():
        raise SystemExit(f"{rel(src)}: no such dataset; shipped: {', '.join(DATASETS)}")
    dst = WORK / "data" / f"{name}.csv"
    if not dst.is_file() or dst.stat().st_mtime_ns < src.stat().st_mtime_ns:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".csv.tmp")
        with gzip.open(src, "rb") as f, open(tmp, "wb") as g:
            shutil.copyfileobj(f, g)
        os.replace(tmp, dst)
    return Path(rel(dst)) if Path.cwd().resolve() == REPO else dst


def pools_dir() -> Path:
    """Where the benchmarks' pools live (``runs/bench/pools``, reused by every benchmark)."""
    d = WORK / "pools"
    d.mkdir(parents=True, exist_ok=True)
    return Path(rel(d)) if Path.cwd().resolve() == REPO else d


def fp32_peak_gflops(n: int = 1024, reps: int = 6) -> float:
    """Measured GFLOP/s of an n x n fp32 matrix multiply (numpy's BLAS, best of ``reps``): a yardstick
    of how fast (and how loaded) the machine was, to compare runs across machines."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return round(2 * n**3 / best / 1e9, 1)


#: what the benchmarks themselves write: a change there is an earlier step's output, not a change of
#: the code the numbers come from (run_all.py runs several steps in one tree)
OUTPUTS = (":(exclude)benchmarks/results", ":(exclude)examples/simulate_results", ":(exclude)README.md")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(backend: str | None = None, *, model: str | None = None) -> dict[str, Any]:
    """How and where a run was made (see the module docstring). ``backend``: the encoder backend the
    numbers come from (default: fmal's default)."""
    from fmal import __version__
    from fmal.encoders import DEFAULT_BACKEND, DEFAULT_MODEL, available_threads, default_model_path, fingerprint_folder

    folder = default_model_path() if model in (None, DEFAULT_MODEL) else Path(model)
    return {
        "fmal_version": __version__,
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUTS)),
        "backend": backend or DEFAULT_BACKEND,
        "model": model or DEFAULT_MODEL,
        "model_fingerprint": fingerprint_folder(folder),
        "machine": {"cores": available_threads(), "cpu": _cpu_model(), "fp32_peak_gflops": fp32_peak_gflops(),
                    "python": platform.python_version()},
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command_line(),
    }


def command_line() -> str:
    """The command that ran, with the script path relative to the repo and any other absolute path
    (a baseline checkout, a work folder) written as ``DIR`` (results never hold machine paths)."""
    argv = [rel(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else (sys.argv[0] if sys.argv else "python")]
    args = ["DIR" if os.path.isabs(a) and not rel(a).startswith(("benchmarks", "examples", "runs")) else a
            for a in sys.argv[1:]]
    return "python " + shlex.join(argv + args)


def write(name: str, numbers: dict[str, Any], *, backend: str | None = None, seconds: float | None = None,
          settings: dict[str, Any] | None = None, provenance_: dict[str, Any] | None = None) -> Path:
    """Write ``benchmarks/results/NAME.json``: provenance + ``settings`` + ``numbers`` (+ wall seconds)."""
    doc: dict[str, Any] = {"name": name, **(provenance_ or provenance(backend))}
    if seconds is not None:
        doc["seconds"] = round(float(seconds), 1)
    doc["settings"] = settings or {}
    doc["numbers"] = numbers
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, default=_plain) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"wrote {rel(path)}", flush=True)
    return path


def read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def _plain(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return rel(o)
    raise TypeError(f"not JSON: {type(o).__name__}")
