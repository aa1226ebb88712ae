"""Image pools (fmal.images): a folder of PNGs or a table of image paths, embedded by a tiny
random-weight CLIP built here (tests/_clip.py), then seed -> query -> export to Label Studio,
Prodigy and Argilla (checked with the real argilla client); bad image files; a text model given
images. The embeddings are random-model vectors: these tests check plumbing, not quality."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _clip import build_tiny_clip, write_digit_pngs
from test_labelset import offline_argilla  # noqa: F401  (the real argilla client, offline)

from fmal import api
from fmal.pool import open_pool
from fmal.exceptions import InvalidInputError, ServiceError

CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def digits(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """40 PNGs (4 per digit) in ``imgs/<digit>/NN.png`` and their gold labels."""
    folder = tmp_path / "imgs"
    return folder, write_digit_pngs(folder, per_class=4)


def _embed(cli, src, clip_dir, index_dir, *extra):
    return cli("embed", src, "--pool", "im", "--model", clip_dir, "--index-dir", index_dir, "--chunk-size", 16,
               "--batch-size", 8, *extra)


def test_folder_of_images_embed_seed_query_export(cli, clip_dir, digits, index_dir, tmp_path, offline_argilla):  # noqa: F811
    folder, gold = digits
    r = _embed(cli, folder, clip_dir, index_dir)
    assert r.exit_code == 0, r.output
    assert "40 rows (40 distinct images, 40 embedded now)" in r.stdout and "backend torch" in r.stdout
    p = open_pool("im", index_dir)
    assert p.ids.tolist() == sorted(gold)  # relative paths, in name order
    assert p.manifest.input.modality == "image" and p.manifest.input.image_root == str(folder.resolve())
    assert p.manifest.model.backend == "torch" and p.dim == 16
    np.testing.assert_allclose(np.linalg.norm(p.embeddings, axis=1), 1.0, atol=1e-5)
    assert "nothing to do" in _embed(cli, folder, clip_dir, index_dir).stdout  # same images, same model: kept

    s = api.seed("im", 10, index_dir=index_dir)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": s.ids, "label": [gold[i] for i in s.ids]}).to_csv(labels, index=False)
    r = cli("query", "--pool", "im", "--labels", labels, "--budget", 6, "--index-dir", index_dir)
    assert r.exit_code == 0, r.output

    r = cli("export", "--pool", "im", "--format", "label-studio", "--classes", ",".join(CLASSES), "--index-dir", index_dir)
    assert r.exit_code == 0, r.output
    out = index_dir / "im" / "exports" / "round-002-label-studio.json"
    tasks = json.loads(out.read_text())
    assert len(tasks) == 6
    for t in tasks:
        assert Path(t["data"]["image"]) == folder.resolve() / t["data"]["fmal_id"] and Path(t["data"]["image"]).is_file()
        assert t["predictions"][0]["result"][0]["to_name"] == "image"
    config = out.with_name("round-002-label-studio.config.xml").read_text()
    assert '<Image name="image" value="$image"/>' in config and 'toName="image"' in config and '<Choice value="7"/>' in config

    res = api.export("im", format="prodigy", index_dir=index_dir, image_url_prefix="http://imgs.local:8080/")
    lines = [json.loads(x) for x in res.output.read_text().splitlines()]
    assert [x["image"] for x in lines] == [f"http://imgs.local:8080/{x['fmal_id']}" for x in lines]
    assert all(len(x["options"]) == 10 and x["accept"] for x in lines)

    rg = offline_argilla
    from argilla.records._mapping._mapper import IngestedRecordMapper

    from fmal.export.argilla import LOG_MAPPING

    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    res = api.export("im", format="argilla", index_dir=index_dir, image_root=moved)
    settings = rg.Settings.from_json(res.output.with_name(res.output.stem + ".settings.json"))
    assert isinstance(settings.fields["image"], rg.ImageField) and settings.questions["label"].labels == CLASSES
    ds = rg.Dataset(name="fmal", settings=settings)
    for d in json.loads(res.output.read_text()):  # what Dataset.records.from_json does with each
        assert d["fields"]["image"] == str(moved / d["id"])
        rec = rg.Record.from_dict(d, dataset=ds)
        assert rec.api_model().fields["image"].startswith("data:image/png;base64,")  # the client read the file
    flat = api.export("im", format="argilla", index_dir=index_dir, output=tmp_path / "r.jsonl", image_url_prefix="https://x/")
    mapper = IngestedRecordMapper(dataset=ds, user_id=None, mapping=LOG_MAPPING)
    for line in flat.output.read_text().splitlines():  # what Dataset.records.log does with each dict
        d = json.loads(line)
        rec = mapper(d)
        assert rec.fields["image"] == f"https://x/{d['fmal_id']}" and rec.suggestions["label"].value in CLASSES


def test_embeddings_are_sentence_transformers_own(clip_dir, digits, index_dir):
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    folder, gold = digits
    api.embed(folder, "im", index_dir=index_dir, model=clip_dir, backend="torch")
    p = open_pool("im", index_dir)
    st = SentenceTransformer(str(clip_dir), device="cpu")
    ref = st.encode([Image.open(folder / i).convert("RGB") for i in p.ids], normalize_embeddings=True)
    np.testing.assert_allclose(p.embeddings, ref, atol=1e-5)


def test_interrupted_image_embed_resumes_chunk_by_chunk(clip_dir, digits, index_dir, tmp_path):
    folder, _ = digits
    ref = api.embed(folder, "ref", index_dir=index_dir, model=clip_dir, chunk_size=8)
    victim = folder / "4" / "00.png"  # row 17: the third chunk
    saved = victim.read_bytes()

    def break_after_two_chunks(done: int) -> None:
        if done == 16:
            victim.write_bytes(b"")  # changed after the input was checked: the encoder names it
    with pytest.raises(InvalidInputError, match=r"4/00.png: is empty \(0 bytes\)"):
        api.embed(folder, "im", index_dir=index_dir, model=clip_dir, chunk_size=8, on_progress=break_after_two_chunks)
    assert not (index_dir / "im" / "manifest.json").exists()
    victim.write_bytes(saved)
    res = api.embed(folder, "im", index_dir=index_dir, model=clip_dir, chunk_size=8)
    assert res.n_chunks_reused == 2 and res.n_embedded == 24
    np.testing.assert_array_equal(open_pool("im", index_dir).embeddings, open_pool(ref.pool_path).embeddings)


def _break(folder: Path, kind: str) -> Path:
    """Spoil one image of ``folder`` the way ``kind`` says; returns it."""
    if kind == "zero-size":
        f = folder / "3" / "01.png"
        f.write_bytes(b"")
    elif kind == "truncated":
        f = folder / "5" / "02.png"
        f.write_bytes(f.read_bytes()[:60])
    elif kind == "not-an-image":
        f = folder / "7" / "notes.png"
        f.write_text("a text file renamed .png\n")
    elif kind == "broken-link":
        f = folder / "8" / "link.png"
        f.symlink_to(folder / "8" / "gone.png")
    else:
        f = folder / "2" / "00.png"
        f.chmod(0)
    return f


@pytest.mark.parametrize("kind, why", [("zero-size", "is empty (0 bytes)"), ("truncated", "is truncated or damaged"),
                                        ("not-an-image", "is not an image"), ("unreadable", "permission denied"),
                                        ("broken-link", "file not found")])
def test_a_bad_image_stops_the_run_or_is_skipped(cli, cli_error, clip_dir, digits, index_dir, kind, why, monkeypatch):
    folder, _ = digits
    bad = _break(folder, kind)
    if kind == "unreadable" and os.geteuid() == 0:  # root reads a file without permissions: the OS's answer to others
        real = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == bad:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)
        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    rel = bad.relative_to(folder).as_posix()
    line = cli_error(_embed(cli, folder, clip_dir, index_dir), rel, why, "--bad-images skip")
    assert "more of the" not in line
    assert not (index_dir / "im").exists() or not (index_dir / "im" / "manifest.json").exists()
    r = _embed(cli, folder, clip_dir, index_dir, "--bad-images", "skip")
    assert r.exit_code == 0, r.output
    assert f"skipped image {rel}: " in r.stderr and why in r.stderr.split(f"skipped image {rel}: ")[1]
    p = open_pool("im", index_dir)
    assert rel not in p.ids.tolist() and p.n == len([f for f in folder.rglob("*.png") if f.exists()]) - (kind != "broken-link")
    assert p.manifest.input.n_bad_skipped == 1
    if not bad.is_symlink():
        bad.chmod(0o644)


def test_several_bad_images_are_counted(cli, cli_error, clip_dir, digits, index_dir):
    folder, _ = digits
    _break(folder, "zero-size")
    _break(folder, "truncated")
    cli_error(_embed(cli, folder, clip_dir, index_dir), "3/01.png", "1 more of the 40 images are bad too")


def test_table_with_an_image_column(cli, cli_error, clip_dir, digits, index_dir, tmp_path):
    folder, gold = digits
    rows = sorted(gold)[::3]
    table = tmp_path / "pics.csv"
    pd.DataFrame({"doc": [f"d{i}" for i in range(len(rows))], "file": [f"imgs/{r}" for r in rows],
                  "label": [gold[r] for r in rows]}).to_csv(table, index=False)
    r = _embed(cli, table, clip_dir, index_dir, "--image-col", "file", "--id-col", "doc")
    assert r.exit_code == 0, r.output
    p = open_pool("im", index_dir)
    assert p.ids.tolist() == [f"d{i}" for i in range(len(rows))] and p.texts.tolist() == [f"imgs/{r}" for r in rows]
    assert p.manifest.input.image_root == str(tmp_path.resolve())
    pd.DataFrame({"doc": ["a"], "file": ["imgs/nope.png"]}).to_csv(table, index=False)
    cli_error(_embed(cli, table, clip_dir, index_dir, "--image-col", "file", "--overwrite"), "imgs/nope.png", "file not found")
    cli_error(_embed(cli, table, clip_dir, index_dir, "--image-col", "path", "--overwrite"), "path")


def test_a_text_model_or_an_onnx_backend_given_images(cli, cli_error, tiny_model_dir, clip_dir, digits, index_dir):
    folder, _ = digits
    cli_error(_embed(cli, folder, tiny_model_dir, index_dir), "encodes text only", "CLIP")
    cli_error(_embed(cli, folder, clip_dir, index_dir, "--backend", "onnx"), "--backend onnx", "texts only", "torch")
    assert not (index_dir / "im" / "manifest.json").exists()


def test_image_options_on_a_text_pool_are_refused(tiny_pool, cli, cli_error):
    index_dir, name, _ = tiny_pool
    api.seed(name, 4, index_dir=index_dir)
    with pytest.raises(InvalidInputError, match="holds texts"):
        api.export(name, format="label-studio", index_dir=index_dir, image_url_prefix="http://x/")
    assert not list((index_dir / name).glob("exports/*"))  # nothing written
    from fmal.sync import labelstudio as ls

    with pytest.raises(InvalidInputError, match="holds texts"):  # refused before any server is called
        ls.sync(name, "http://127.0.0.1:9", index_dir=index_dir, token="t", image_url_prefix="http://x/")
    r = cli("sync", "label-studio", "--pool", name, "--url", "http://127.0.0.1:9", "--index-dir", index_dir,
            "--image-url-prefix", "http://x/", "--json")
    cli_error(r, "--image-url-prefix says where an image pool's images are", "holds texts")  # before the token is read


class _FakeLabelStudio:
    """Answers the project lookups of a sync pass with one project whose config is ``config``;
    any other call fails the test (the refusals below come before tasks or labels move)."""

    url = "http://ls.test"

    def __init__(self, config: str) -> None:
        self.config, self.calls = config, []

    def call(self, method: str, path: str, body=None):
        self.calls.append((method, path))
        if method == "GET" and path.startswith("/api/projects/1"):
            return {"id": 1, "title": "fmal: im", "label_config": self.config}
        raise AssertionError(f"unexpected call {method} {path}")


def test_sync_of_an_image_pool_needs_a_url_prefix_and_an_image_project(clip_dir, digits, index_dir):
    from fmal.export.labelstudio import label_config
    from fmal.sync import labelstudio as ls

    folder, _ = digits
    api.embed(folder, "im", index_dir=index_dir, model=clip_dir, batch_size=8)
    api.seed("im", 4, index_dir=index_dir, classes=CLASSES)
    text_project = _FakeLabelStudio(label_config(CLASSES))
    with pytest.raises(InvalidInputError, match="holds images, which Label Studio loads by URL: pass image_url_prefix"):
        ls.sync("im", "http://ls.test", 1, index_dir=index_dir, client=text_project)
    with pytest.raises(InvalidInputError, match="image_url_prefix must not be empty"):
        ls.sync("im", "http://ls.test", 1, index_dir=index_dir, client=text_project, image_url_prefix=" ")
    assert text_project.calls == []  # refused before any call
    with pytest.raises(ServiceError, match=r"labels \$text \(made for a text pool\) but pool 'im' holds images"):
        ls.sync("im", "http://ls.test", 1, index_dir=index_dir, client=text_project, image_url_prefix="/data/local-files/?d=x/")
    with pytest.raises(InvalidInputError, match="both say where the images are"):
        api.export("im", format="label-studio", index_dir=index_dir, image_root=folder, image_url_prefix="http://x/")


def test_jpeg_webp_and_exif_orientation(clip_dir, index_dir, tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    (folder / ".hidden").mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown turned 90 degrees clockwise
    img.save(folder / "a-tagged.png", exif=exif)
    img.transpose(Image.Transpose.ROTATE_270).save(folder / "b-upright.png")  # what a browser shows for a-tagged
    img.save(folder / "c.jpg", quality=95)
    img.save(folder / "d.webp")
    img.save(folder / ".hidden" / "e.png")
    (folder / "notes.md").write_text("not an image, not a table: ignored")
    api.embed(folder, "im", index_dir=index_dir, model=clip_dir)
    p = open_pool("im", index_dir)
    assert p.ids.tolist() == ["a-tagged.png", "b-upright.png", "c.jpg", "d.webp"]
    np.testing.assert_allclose(p.embeddings[0], p.embeddings[1], atol=1e-6)
    assert float(p.embeddings[0] @ p.embeddings[3]) < 0.9999  # the untagged copy is not turned


def test_repair_rebuilds_damaged_embeddings_of_an_image_pool(cli, cli_error, clip_dir, digits, index_dir):
    folder, _ = digits
    assert _embed(cli, folder, clip_dir, index_dir).exit_code == 0
    good = np.array(open_pool("im", index_dir).embeddings)
    (index_dir / "im" / "embeddings.npy").write_bytes(b"damaged")
    cli_error(_embed(cli, folder, clip_dir, index_dir), "--repair")
    r = _embed(cli, folder, clip_dir, index_dir, "--repair")
    assert r.exit_code == 0 and "repaired" in r.stdout, r.output
    np.testing.assert_allclose(open_pool("im", index_dir).embeddings, good, atol=1e-6)
