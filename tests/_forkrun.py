"""Run many fmal CLI commands as real, separate processes without paying Python's and fmal's
import time for each: this process imports fmal once, then forks one child per command (no
thread runs in this process, so forking is safe). Each child sets its environment and arguments,
runs ``fmal.cli.main`` and exits; a child killed by a signal reports it as a negative code.

    python tests/_forkrun.py JOBS.json PARALLEL  ->  JSON list of return codes on stdout

A job is {"argv": [...], "env": {...}, "stdout": path, "stderr": path}. JOBS.json may instead
hold a list of groups (lists of jobs): each group is started at once, groups one after another,
and the answer is a list of lists.
"""

from __future__ import annotations

import json
import os
import sys


def _child(job: dict) -> None:
    os.environ.update(job.get("env", {}))
    out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = ["fmal", *job["argv"]]
    code = 0
    try:
        from fmal.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as exit code 99 with the traceback on stderr
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    parallel = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    import fmal.cli  # noqa: F401  (imported once, shared by every child)

    if spec and isinstance(spec[0], list):  # groups: each group's jobs all at once, group after group
        print(json.dumps([_run(group, len(group)) for group in spec]))
    else:
        print(json.dumps(_run(spec, parallel)))


def _run(jobs: list[dict], parallel: int) -> list[int | None]:
    codes: list[int | None] = [None] * len(jobs)
    running: dict[int, int] = {}
    todo = list(range(len(jobs)))
    while todo or running:
        while todo and len(running) < parallel:
            i = todo.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(jobs[i])
            running[pid] = i
        pid, status = os.wait()
        i = running.pop(pid)
        codes[i] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return codes


if __name__ == "__main__":
    main()
