"""``fmal sync label-studio``: the annotation loop run against a live Label Studio server.

One pass (:func:`sync`):
  1. the project: found by id (or by the title ``fmal: POOL``, else created); its labeling config
     is written from the pool's classes when it has none, else checked (a choices control on the
     ``text`` object that offers every declared class); a pool without declared classes takes the
     config's;
  2. pull: every annotation not seen yet (or updated since) comes back through the export API and
     is imported with the conflict policy; answers of a task annotated several times are resolved
     together (majority by default) and each is kept in labels.db as a vote, with its annotator;
  3. when ``every`` new labels have come in since the last round, the next ``query`` round runs;
  4. push: the last round's picks that are neither labeled nor in the project yet go in as tasks
     (``data.fmal_id``; the probe's suggestion as a prediction with its score).

Idempotent and resumable: pushed task ids and pulled annotation ids (with their update time) are
recorded in labels.db in the transaction that imports their answers; before pushing, the project's
tasks are listed and any fmal id already there is adopted instead of pushed again (a pass killed
between the upload and its record pushes nothing twice). The token comes from the environment
(``LABEL_STUDIO_API_KEY`` or ``FMAL_LS_TOKEN``): a legacy token (``Token``) or a personal access
token (a JWT refresh token, exchanged for an access token). Plain ``urllib``: no SDK needed.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmal import images, multilabel
from fmal._validation import show
from fmal.exceptions import InvalidInputError, LabelsError, ServiceError
from fmal.export.base import ID_KEY, IMAGE_KEY, LABEL_KEY
from fmal.export.labelstudio import TEXT_KEY, answers_of, label_config, tasks
from fmal.session import LabelConflict, Session

TOKEN_ENV = ("LABEL_STUDIO_API_KEY", "FMAL_LS_TOKEN")
PAGE = 500


def token_from_env() -> str:
    for name in TOKEN_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise InvalidInputError(f"no Label Studio token: set {TOKEN_ENV[0]} (or {TOKEN_ENV[1]}) to the access token of your "
                            "Label Studio account (Account & Settings); it is never passed on the command line")


class Client:
    """The Label Studio REST API over ``urllib``; every failure is a one-line ServiceError."""

    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError(f"--url {url!r}: give the server's address, e.g. http://localhost:8080")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._auth: str | None = None

    def _header(self) -> str:
        if self._auth is None:
            if self.token.count(".") == 2 and self.token.startswith("eyJ"):  # a personal access token (JWT refresh)
                access = self._raw("POST", "/api/token/refresh", {"refresh": self.token}, "Token -")
                if not isinstance(access, dict) or not access.get("access"):
                    raise ServiceError(f"{self.url}: the token was not exchanged for an access token; set {TOKEN_ENV[0]} to a valid token")
                self._auth = f"Bearer {access['access']}"
            else:
                self._auth = f"Token {self.token}"
        return self._auth

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self._raw(method, path, body, self._header())

    def _raw(self, method: str, path: str, body: Any, auth: str) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth != "Token -":
            headers["Authorization"] = auth
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = exc.read().decode("utf-8", "replace").strip().replace("\n", " ")[:200]
            except OSError:
                pass
            if exc.code in (401, 403):
                raise ServiceError(f"{self.url}: Label Studio refused the token (HTTP {exc.code} on {method} {path}); set "
                                   f"{TOKEN_ENV[0]} to the access token of an account of this server") from None
            raise ServiceError(f"{self.url}: HTTP {exc.code} on {method} {path}{f' ({detail})' if detail else ''}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceError(f"{self.url}: cannot reach Label Studio ({reason}); is the server running at that address?") from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ServiceError(f"{self.url}: {method} {path} did not answer JSON; is this a Label Studio server?") from None


# ---------------------------------------------------------------------- the labeling config


@dataclass(frozen=True)
class Control:
    """The choices control fmal reads and writes: its name, the object it labels, its choices."""

    name: str
    to_name: str
    choices: tuple[str, ...]


def parse_config(xml: str, shows: str = TEXT_KEY) -> list[Control]:
    """Every ``<Choices>`` control of a labeling config whose object shows ``$text`` (``shows``:
    ``image`` for an image pool's config)."""
    try:
        root = ET.fromstring(xml or "<View/>")
    except ET.ParseError as exc:
        raise ServiceError(f"the project's labeling config is not valid XML ({exc})") from None
    objects = {el.get("name"): el.get("value", "") for el in root.iter() if el.get("value", "").startswith("$")}
    out = []
    for el in root.iter("Choices"):
        to = el.get("toName", "")
        if objects.get(to) == f"${shows}":
            out.append(Control(el.get("name", ""), to, tuple(c.get("value", "") for c in el.iter("Choice"))))
    return out


def _project_control(project: dict[str, Any], control: str | None, shows: str = TEXT_KEY) -> Control | None:
    found = parse_config(project.get("label_config") or "", shows)
    if control is not None:
        mine = [c for c in found if c.name == control]
        if not mine:
            raise ServiceError(f"project {project.get('id')}: no choices control named {control!r} on the object "
                               f"showing ${shows} (found: {', '.join(c.name for c in found) or 'none'})")
        return mine[0]
    if not found:
        return None
    named = [c for c in found if c.name == LABEL_KEY]
    if named:
        return named[0]
    if len(found) > 1:
        raise ServiceError(f"project {project.get('id')}: choices controls {', '.join(repr(c.name) for c in found)}; "
                           "name the one to sync with --control NAME")
    return found[0]


# ---------------------------------------------------------------------- one pass


@dataclass
class SyncResult:
    """What one pass did."""

    project: int
    target: str
    events: list[str] = field(default_factory=list)
    pulled: int = 0  # new or updated annotations
    cancelled: int = 0  # skipped / cancelled annotations among them
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    conflicts: tuple[LabelConflict, ...] = ()
    disagreements: int = 0  # tasks whose annotators disagree
    ties: list[str] = field(default_factory=list)  # majority: tied tasks (no label)
    unknown: int = 0  # answers for ids not in the pool
    rounds_run: list[int] = field(default_factory=list)
    pushed: int = 0
    adopted: int = 0  # tasks found in the project but not recorded (a killed pass): recorded, not pushed again
    n_tasks: int = 0  # tasks of this pool in the project after the pass
    seconds: float = 0.0


def target_of(url: str, project: int) -> str:
    return f"label-studio:{url.rstrip('/')}/projects/{project}"


def _list(client: Client, path: str) -> list[dict[str, Any]]:
    """Every item of a paginated list endpoint (a plain list, or ``{"tasks"|"results": [...]}``)."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        sep = "&" if "?" in path else "?"
        got = client.call("GET", f"{path}{sep}page={page}&page_size={PAGE}")
        items = got if isinstance(got, list) else (got or {}).get("tasks", (got or {}).get("results", []))
        out.extend(i for i in items if isinstance(i, dict))
        total = got.get("total", got.get("count")) if isinstance(got, dict) else None
        if not items or len(items) < PAGE or (total is not None and len(out) >= total):
            return out
        page += 1


def _project_tasks(client: Client, project: int) -> dict[str, str]:
    """{fmal id: task id} of the project's tasks that carry an fmal id."""
    out = {}
    for t in _list(client, f"/api/tasks?project={project}&fields=task_only"):
        fid = (t.get("data") or {}).get(ID_KEY)
        if fid is not None and str(fid) not in out:
            out[str(fid)] = str(t.get("id"))
    return out


def find_or_create_project(client: Client, pool_name: str, project: int | None, classes: list[str],
                           multiple: bool = False, image: bool = False) -> dict[str, Any]:
    if project is not None:
        try:
            return client.call("GET", f"/api/projects/{int(project)}")
        except ServiceError as exc:
            if "HTTP 404" in str(exc):
                raise ServiceError(f"{client.url}: no project {project} (or this token cannot see it); leave --project "
                                   "out to create one") from None
            raise
    title = f"fmal: {pool_name}"
    for p in _list(client, "/api/projects?ordering=id"):
        if p.get("title") == title:
            return client.call("GET", f"/api/projects/{p['id']}")
    if not classes:
        raise InvalidInputError(f"pool {pool_name!r} has no classes: pass --classes A,B,C to create the Label Studio project")
    return client.call("POST", "/api/projects", {"title": title, "label_config": label_config(classes, image=image, multiple=multiple)})


def _setup(client: Client, session: Session, pool_name: str, project: int | None, control: str | None,
           res_events: list[str], image: bool = False) -> tuple[dict[str, Any], Control]:
    """The project, its labeling config written or checked, the pool's classes in step with it
    (``image``: an image pool, whose control labels the object showing ``$image``)."""
    classes = list(session.classes)
    multiple = session.task == multilabel.MULTI  # multi-label hook: a multiple-choice control
    shows = IMAGE_KEY if image else TEXT_KEY
    proj = find_or_create_project(client, pool_name, project, classes, multiple, image)
    ctl = _project_control(proj, control, shows)
    if ctl is None:
        other = TEXT_KEY if image else IMAGE_KEY
        if parse_config(proj.get("label_config") or "", other):
            raise ServiceError(f"project {proj['id']}: its labeling config labels ${other} (made for {'a text' if image else 'an image'} "
                               f"pool) but pool {pool_name!r} holds {'images' if image else 'texts'}: sync with a project set up "
                               f"for {'images' if image else 'texts'} (--project ID), or rename or delete project {proj['id']} in "
                               f"Label Studio and leave --project out, so that fmal creates one")
        if (proj.get("label_config") or "").strip() not in ("", "<View></View>", "<View/>"):
            raise ServiceError(f"project {proj['id']}: its labeling config has no choices control on an object showing "
                               f"${shows}; fmal writes tasks with data.{shows} and reads one choices control")
        if not classes:
            raise InvalidInputError(f"project {proj['id']} has no labeling config and pool {pool_name!r} no classes: "
                                    "pass --classes A,B,C")
        proj = client.call("PATCH", f"/api/projects/{proj['id']}", {"label_config": label_config(classes, image=image, multiple=multiple)})
        ctl = _project_control(proj, control, shows) or Control(LABEL_KEY, shows, tuple(classes))
        res_events.append(f"project {proj['id']}: labeling config written: control {ctl.name!r}, {len(classes)} classes")
        return proj, ctl
    if not classes:
        session.set_classes(list(ctl.choices))
        res_events.append(f"project {proj['id']}: classes read from its labeling config: {', '.join(ctl.choices)}")
    else:
        missing = [c for c in classes if c not in ctl.choices]
        if missing:
            raise ServiceError(f"project {proj['id']}: its control {ctl.name!r} lacks the pool's class(es) "
                               f"{', '.join(map(repr, missing))}; add them to the labeling config in Label Studio, or fix --classes")
        extra = [c for c in ctl.choices if c not in classes]
        if extra:
            res_events.append(f"project {proj['id']}: the config offers class(es) the pool does not declare: {', '.join(extra)}")
    return proj, ctl


def _pull(client: Client, session: Session, pool: Any, proj: dict[str, Any], ctl: Control, target: str, policy: str,
          res: SyncResult) -> None:
    """Import every new or updated annotation, in one transaction with its record."""
    from fmal.api.annotation import _resolve_answers
    from fmal.export import consensus

    pid = proj["id"]
    exported = client.call("GET", f"/api/projects/{pid}/export?exportType=JSON")
    if not isinstance(exported, list):
        raise ServiceError(f"{client.url}: the export of project {pid} is not a list of tasks")
    seen = session.sync_annotations(target)
    fresh: list[tuple[str, str, str]] = []  # (annotation id, updated, task id)
    touched = []
    for t in exported:
        if not isinstance(t, dict):
            continue
        new = [(str(a.get("id")), str(a.get("updated_at") or a.get("created_at") or ""), str(t.get("id")))
               for a in t.get("annotations") or [] if isinstance(a, dict) and seen.get(str(a.get("id"))) != str(a.get("updated_at") or a.get("created_at") or "")]
        if new:
            fresh.extend(new)
            touched.append(t)
            res.cancelled += sum(1 for a in t.get("annotations") or [] if isinstance(a, dict) and a.get("was_cancelled")
                                 and str(a.get("id")) in {n[0] for n in new})
    res.pulled = len(fresh)
    if not fresh:
        return
    users = {str(u.get("id")): str(u.get("email") or u.get("username") or u.get("id"))
             for u in _list(client, "/api/users") if isinstance(u, dict)}
    where_new = {f"(task {show(int(tid) if tid.isdigit() else tid)}, annotation {show(int(aid) if aid.isdigit() else aid)})"
                 for aid, _, tid in fresh}
    got = answers_of([(f"task {t.get('id')}", t) for t in touched], Path(f"{client.url}/projects/{pid}"), ctl.name, users)
    got = multilabel.read_answers(got, session.task, False, policy, f"{client.url}/projects/{pid}", pool.name)
    in_pool = set(pool.in_pool([a.id for a in got.answers]))
    answers = [a for a in got.answers if a.id in in_pool]
    res.unknown = len(got.answers) - len(answers)
    resolution = _resolve_answers(pool, session, answers, policy, f"label-studio project {pid}")
    new_answer = {a.where for a in answers if any(a.where.endswith(w) for w in where_new)}
    votes = [(a.id, a.label, a.annotator) for a in answers if a.where in new_answer
             and sum(1 for b in answers if b.id == a.id) > 1]
    with session.transaction("sync: pull"):
        merge = session.add_labels(resolution.labels, source=f"label-studio:{client.url}/projects/{pid}",
                                   on_conflict=consensus.merge_policy(policy), annotators=resolution.annotators, votes=votes)
        session.record_sync_annotations(target, fresh)
    res.added, res.changed, res.unchanged = merge.added, merge.changed, merge.unchanged
    res.conflicts = merge.conflicts
    res.disagreements = len(resolution.disagreements)
    res.ties = [d.id for d in resolution.ties]
    skipped = Counter(w for _, w in got.skipped)
    line = (f"pulled {len(fresh)} annotation(s) on {len(touched)} task(s): {merge.added} label(s) added, {merge.changed} changed, "
            f"{merge.unchanged} unchanged")
    if skipped:
        line += "; " + "; ".join(f"{n} x {w}" for w, n in skipped.most_common())
    res.events.append(line)
    for d in resolution.disagreements:
        res.events.append(f"  annotators disagree on {d.id!r}: " + ", ".join(f"{a.label!r} ({a.annotator or '?'})" for a in d.answers)
                          + (f" -> {d.chosen!r}" if d.chosen else ""))
    for d in resolution.ties:
        res.events.append(f"  tie on {d.id!r}: " + ", ".join(f"{a.label!r} ({a.annotator or '?'})" for a in d.answers)
                          + " -> not imported until another annotator answers")
    for c in merge.conflicts:
        res.events.append(f"  conflict {c.id!r}: stored {c.stored!r}, Label Studio {c.incoming!r} -> {c.resolution}")
    if resolution.annotator_quality:
        res.events.append("  annotator quality (CROWDLAB): " + ", ".join(f"{a} {q:.2f}" for a, q in resolution.annotator_quality.items()))
    if res.unknown:
        res.events.append(f"  {res.unknown} answer(s) for ids not in the pool (not imported)")


def _push(client: Client, session: Session, pool: Any, proj: dict[str, Any], ctl: Control, target: str, res: SyncResult,
          image_url_prefix: str | None = None) -> None:
    """Push the last round's open picks that are not in the project yet (an image pool's with the
    ``image`` each task loads: :func:`fmal.images.with_image_sources`)."""
    from fmal.api.rounds import _frame_of_round

    pid = proj["id"]
    there = _project_tasks(client, pid)
    recorded = session.sync_tasks(target)
    adopt = {fid: tid for fid, tid in there.items() if recorded.get(fid) != tid}
    if not session.rounds:
        res.n_tasks = len(there)
        return
    rec = session.rounds[-1]
    labels = session.labels
    todo = [i for i in rec.ids if i not in there and i not in labels]
    if adopt:
        session.record_sync_tasks(target, adopt, None)
        res.adopted = sum(1 for fid in adopt if fid not in recorded)
    if not todo:
        res.n_tasks = len(there)
        return
    frame = _frame_of_round(pool, rec)
    frame = frame[frame["id"].isin(todo)].reset_index(drop=True)
    if session.task == multilabel.MULTI:  # multi-label hook: suggestions as several choices
        frame.attrs["multi_label"] = True
    images.with_image_sources(frame, pool.manifest, pool.name, url_prefix=image_url_prefix)
    payload = tasks(frame, ctl.name, ctl.to_name, list(ctl.choices))
    n_pred = sum(1 for t in payload if t.get("predictions"))
    client.call("POST", f"/api/projects/{pid}/import", payload)
    now = _project_tasks(client, pid)
    pushed = {fid: now[fid] for fid in todo if fid in now}
    session.record_sync_tasks(target, pushed, rec.round)
    res.pushed = len(pushed)
    res.n_tasks = len(now)
    res.events.append(f"pushed {len(pushed)} task(s) of round {rec.round} ({rec.kind}, {n_pred} with a prediction); "
                      f"{len(now)} task(s) in project {pid}")
    if len(pushed) < len(todo):
        res.events.append(f"  {len(todo) - len(pushed)} task(s) sent but not listed by the server; the next pass retries them")


def _maybe_query(pool_name: str, session: Session, every: int | None, budget: int | None, strategy: str,
                 index_dir: Any, res: SyncResult) -> None:
    """Run the next query round when ``every`` labels came in since the last round was made."""
    from fmal import api

    if not every or not session.rounds:
        return
    last = session.rounds[-1]
    new = len(session.labels) - last.n_labeled
    if new < every:
        return
    n = budget or last.n_picks
    try:
        sel = api.query(pool_name, None, n, strategy, index_dir=index_dir)
    except LabelsError as exc:  # e.g. a single class so far: the loop waits for more labels
        res.events.append(f"next round not run yet: {exc}")
        return
    if not sel.reused:
        res.rounds_run.append(sel.round)
        acc = sel.info.get("probe_cv_accuracy")
        res.events.append(f"{new} new label(s) since round {last['round']}: round {sel.round} ({sel.strategy}) picked {len(sel.picks)}"
                          f"{f', probe cv accuracy {acc:.2f}' if acc is not None else ''}"
                          + (f"; {sel.info['mix']}" if sel.info.get("mix") else ""))


def sync(
    pool: str,
    url: str,
    project: int | None = None,
    *,
    index_dir: Any = None,
    classes: str | list[str] | None = None,
    control: str | None = None,
    on_conflict: str = "majority",
    every: int | None = None,
    budget: int | None = None,
    strategy: str = "auto",
    token: str | None = None,
    client: Client | None = None,
    image_url_prefix: str | None = None,
) -> SyncResult:
    """One pass of the loop against Label Studio at ``url`` (see the module docstring). An image
    pool's tasks carry ``image``: ``image_url_prefix`` + the URL-quoted relative path (Label
    Studio's ``/data/local-files/?d=REL/`` with local file serving on, or ``http://host/`` of a
    server of the images); required for an image pool, as the browser loads each image by URL."""
    from fmal.pool import open_pool
    from fmal.api.labelset import _declare
    from fmal.export.consensus import POLICIES

    t0 = time.perf_counter()
    if on_conflict not in POLICIES:
        raise InvalidInputError(f"--on-conflict must be one of {', '.join(POLICIES)}, got {on_conflict!r}")
    if every is not None and every < 1:
        raise InvalidInputError(f"--every must be a positive number of labels, got {every}")
    p = open_pool(pool, index_dir)
    image = images.image_options(p.manifest, p.name, None, image_url_prefix) is not None
    if image and image_url_prefix is None:
        raise InvalidInputError(f"pool {p.name!r} holds images, which Label Studio loads by URL: pass image_url_prefix, e.g. "
                                "'/data/local-files/?d=photos/' (local file serving on) or 'http://host:8000/'",
                                param="image_url_prefix")
    session = Session(p.path)
    if classes is not None:
        _declare(session, classes)
    client = client or Client(url, token or token_from_env())
    events: list[str] = []
    proj, ctl = _setup(client, session, p.name, project, control, events, image)
    target = target_of(client.url, int(proj["id"]))
    res = SyncResult(int(proj["id"]), target, events)
    session = Session(p.path)
    _pull(client, session, p, proj, ctl, target, on_conflict, res)
    session = Session(p.path)
    _maybe_query(pool, session, every, budget, strategy, index_dir, res)
    _push(client, Session(p.path), p, proj, ctl, target, res, image_url_prefix)
    res.seconds = time.perf_counter() - t0
    return res


def watch(
    pool: str,
    url: str,
    project: int | None = None,
    *,
    interval: float = 10.0,
    on_event: Callable[[str], None] = print,
    max_passes: int | None = None,
    on_pass: Callable[[SyncResult], None] | None = None,
    **kwargs: Any,
) -> int:
    """Run :func:`sync` every ``interval`` seconds, one line per event (``on_pass``: also called
    with each pass's result); a server that is down is reported and retried. Returns the number of
    passes (``max_passes``: stop after that many)."""
    passes = 0
    project_id = project
    while max_passes is None or passes < max_passes:
        try:
            res = sync(pool, url, project_id, **kwargs)
            project_id = res.project
            kwargs.pop("classes", None)  # declared once
            for e in res.events:
                on_event(e)
            if on_pass is not None:
                on_pass(res)
        except ServiceError as exc:
            on_event(f"error: {exc} (retrying in {interval:.0f} s)")
        passes += 1
        if max_passes is not None and passes >= max_passes:
            break
        time.sleep(interval)
    return passes


def describe(res: SyncResult) -> str:
    """The pass in one closing line."""
    parts = [f"project {res.project}: {res.pulled} annotation(s) pulled ({res.added} added, {res.changed} changed)"]
    if res.rounds_run:
        parts.append(f"round(s) {', '.join(map(str, res.rounds_run))} run")
    parts.append(f"{res.pushed} task(s) pushed, {res.n_tasks} in the project")
    return "; ".join(parts) + f" ({res.seconds:.1f} s)"


__all__ = ["Client", "Control", "SyncResult", "TOKEN_ENV", "describe", "parse_config", "sync", "target_of", "token_from_env",
           "watch"]
