"""Image pools: listing, checking and loading the images a CLIP model embeds.

An image input is a folder of images (.jpg, .jpeg, .png, .webp; searched recursively, hidden
files and folders skipped, read in the order of their relative paths, each row's id its relative
path), one image file, or a table (CSV/TSV/JSONL/Parquet) whose ``image_col`` holds paths relative
to the table's folder (or absolute).

Every image is read and decoded once before the model loads: an empty, unreadable, truncated or
non-image file is found in seconds, not after hours of embedding. By default a bad file stops the
run (like a bad row of a text file), the error naming it and counting the others; ``on_bad="skip"``
leaves them out of the pool and reports them (:attr:`ImageTable.bad`).

The pool stores each image's path (relative to the recorded root) as the row's text; exports turn
it back into a file path or a served URL (:func:`image_sources`).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fmal._validation import cut
from fmal.exceptions import InvalidInputError
from fmal.io import READ_FORMATS, ShardJoiner, TextTable, read_shard

if TYPE_CHECKING:
    import pandas as pd

    from fmal.pool.manifest import Manifest

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ON_BAD = ("stop", "skip")
#: what the pool records as the column of a folder's images
FOLDER_COL = "image"


@dataclass(frozen=True)
class BadImage:
    """An image that cannot be embedded: its path as the input names it, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageTable(TextTable):
    """The images of a pool: ``texts`` are their paths relative to ``root`` (what a row shows),
    ``ids`` the folder's relative paths or the table's id column. ``bad``: files left out (on_bad="skip")."""

    root: Path = Path(".")
    image_col: str | None = None
    bad: tuple[BadImage, ...] = field(default=())

    def input_info(self) -> dict[str, Any]:
        """What the pool manifest records about the images (under ``input``)."""
        return {"modality": "image", "image_root": str(self.root), "image_col": self.image_col,
                "n_bad_skipped": len(self.bad)}


def is_image_input(input: object, image_col: str | None) -> bool:
    """Whether ``input`` is an image input: ``image_col`` given, one image file, or a folder
    holding images and no table files (a folder with table files stays a folder of text shards)."""
    if image_col is not None:
        return True
    if not isinstance(input, (str, os.PathLike)):
        return False
    p = Path(input)
    if p.is_file():
        return p.suffix.lower() in IMAGE_SUFFIXES
    if not p.is_dir():
        return False
    if any(f.is_file() and f.suffix.lower() in READ_FORMATS and not f.name.startswith(".") for f in p.iterdir()):
        return False
    return bool(_list_folder(p))


def _list_folder(folder: Path) -> list[Path]:
    """The image files under ``folder`` in relative-path order; a broken link is listed (and
    reported as not found), never silently dropped."""
    files = [f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and (f.is_file() or f.is_symlink())
             and not any(part.startswith(".") for part in f.relative_to(folder).parts)]
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix())


def check_on_bad(on_bad: object) -> str:
    if on_bad not in ON_BAD:
        raise InvalidInputError(f"--bad-images must be one of {list(ON_BAD)}, got {on_bad!r}")
    return str(on_bad)


def read_image_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None) of a readable, non-empty image file, else (None, why not)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "file not found"
    except PermissionError:
        return None, "cannot be read (permission denied); check its permissions"
    except IsADirectoryError:
        return None, "is a folder, not an image file"
    except OSError as exc:
        return None, f"cannot be read ({cut(exc.strerror or str(exc), 80)})"
    if not data:
        return None, "is empty (0 bytes)"
    return data, None


def decode(data: bytes, mode: str = "RGB", *, upright: bool = False) -> tuple[Any, str | None]:
    """(PIL image in ``mode``, None) of image file bytes, fully decoded, else (None, why not).
    ``upright``: turned as its EXIF orientation says (as browsers, hence annotators, see it)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # the header alone says nothing of a truncated file
    except UnidentifiedImageError:
        return None, "is not an image (Pillow cannot identify its format)"
    except Image.DecompressionBombError as exc:
        return None, f"is too large to decode safely ({cut(str(exc), 80)})"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"is truncated or damaged ({cut(str(exc), 80)})"
    if upright:
        img = ImageOps.exif_transpose(img) or img
    return img.convert(mode) if img.mode != mode else img, None


def load_image(root: Path, rel: str) -> Any:
    """The RGB image at ``root/rel``, upright (:func:`decode`), or an InvalidInputError naming the
    file (one that changed or vanished since the pool's input was checked)."""
    path = root / rel
    data, why = read_image_bytes(path)
    img = None
    if data is not None:
        img, why = decode(data, upright=True)
    if why is not None:
        raise InvalidInputError(f"{path}: {why}; fix or remove it and run the same command again")
    return img


def _check_all(root: Path, rels: list[str]) -> tuple[list[str], list[BadImage]]:
    """Read and decode every image: (sha256 digests, bad images); a bad one's digest is ""."""
    digests, bad = [], []
    for rel in rels:
        data, why = read_image_bytes(root / rel)
        if data is not None:
            img, why = decode(data)
            if img is not None:
                img.close()
        if why is not None:
            bad.append(BadImage(rel, why))
            digests.append("")
        else:
            digests.append(hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]
    return digests, bad


def _refuse_bad(where: Path, bad: list[BadImage], n: int) -> None:
    first = bad[0]
    more = f"; {len(bad) - 1} more of the {n} images are bad too" if len(bad) > 1 else ""
    raise InvalidInputError(
        f"{where / first.path}: {first.reason}{more}; fix or remove the file(s), or pass --bad-images skip "
        "to leave them out of the pool"
    )


def load_images(
    input: str | os.PathLike[str], *, image_col: str | None = None, id_col: str | None = None, on_bad: str = "stop",
) -> ImageTable:
    """List and check the images of ``input`` (a folder, one image, or a table with ``image_col``).

    Raises InvalidInputError naming the first bad file (and how many others) unless
    ``on_bad="skip"``, which leaves them out and lists them in ``bad``. The fingerprint covers
    every image's bytes (and the table's), so changing one image rebuilds the pool.
    """
    on_bad = check_on_bad(on_bad)
    if not isinstance(input, (str, os.PathLike)):
        raise InvalidInputError(f"input: images are read from files: give a folder of images or the path of a table with "
                                f"image_col, not a {type(input).__name__}")
    path = Path(input)
    if not path.exists():
        raise InvalidInputError(f"{path}: not found; give a folder of images or a table with --image-col")
    table_digest = ""
    frame_rows = None
    if image_col is not None:
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
            raise InvalidInputError(f"{path}: --image-col names a column of a table (CSV, TSV, JSONL, Parquet); "
                                    "give the table, or leave --image-col out for a folder of images")
        shard = read_shard(path, text_col=image_col, id_col=id_col)  # non-empty paths, valid and unique ids
        root, rels, table_digest = path.parent.resolve(), shard.texts, shard.digest
        joiner = ShardJoiner([path])
        joiner.add(shard.texts, shard.ids, shard.id_col)
        ids = joiner.ids() if shard.ids is not None else _ids_from_paths(rels)
        used_id_col, fmt, frame_rows = shard.id_col, f"{shard.format} table of images", shard.frame
        text_col = image_col
    else:
        if id_col is not None:
            raise InvalidInputError("--id-col names a column of a table; the ids of a folder of images are their relative paths")
        if path.is_dir():
            root = path.resolve()
            rels = [f.relative_to(path).as_posix() for f in _list_folder(path)]
            if not rels:
                raise InvalidInputError(f"{path}: folder holds no {', '.join(IMAGE_SUFFIXES)} files; give a folder of images")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            root, rels = path.parent.resolve(), [path.name]
        else:
            raise InvalidInputError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}); for a table of image paths pass --image-col")
        ids, used_id_col, fmt, text_col = list(rels), None, "folder of images", FOLDER_COL
    digests, bad = _check_all(root, rels)
    if bad and on_bad == "stop":
        _refuse_bad(root, bad, len(rels))
    keep = [i for i, d in enumerate(digests) if d]
    if not keep:
        raise InvalidInputError(f"{path}: none of the {len(rels)} images can be read (e.g. {bad[0].path}: {bad[0].reason})")
    h = hashlib.sha256(f"{table_digest}\n{text_col}\n".encode())
    for i in keep:
        h.update(f"{rels[i]}\t{digests[i]}\n".encode())
    import pandas as pd

    if frame_rows is not None:
        frame = frame_rows.iloc[keep].reset_index(drop=True)
    else:
        frame = pd.DataFrame({"id": [ids[i] for i in keep], FOLDER_COL: [rels[i] for i in keep]})
    return ImageTable(
        path=path, format=fmt, ids=[ids[i] for i in keep], texts=[rels[i] for i in keep], text_col=text_col,
        id_col=used_id_col, fingerprint="sha256:" + h.hexdigest(), frame=frame, root=root, image_col=image_col,
        bad=tuple(bad),
    )


def _ids_from_paths(rels: list[str]) -> list[str]:
    """A table without ids: each row's image path, repeats suffixed -2, -3 in row order."""
    seen: dict[str, int] = {}
    out = []
    for r in rels:
        seen[r] = seen.get(r, 0) + 1
        out.append(r if seen[r] == 1 else f"{r}-{seen[r]}")
    return out


def check_backend(backend: str | None) -> str:
    """The encoder backend of an image pool: torch (ONNX backends export text models only)."""
    if backend not in (None, "torch"):
        raise InvalidInputError(f"--backend {backend}: the ONNX backends embed texts only for now; image pools run on "
                                "torch (leave --backend out or pass --backend torch)")
    return "torch"


# ----------------------------------------------------------------------------- exports


def pool_image_root(manifest: Manifest) -> Path | None:
    """The folder an image pool's paths are relative to; None for a text pool."""
    inp = manifest.input
    return Path(inp.image_root) if inp is not None and inp.modality == "image" and inp.image_root else None


def image_options(manifest: Manifest, pool_name: str, image_root: str | os.PathLike[str] | None = None,
                  url_prefix: str | None = None) -> Path | None:
    """The image pool's root (:func:`pool_image_root`), None for a text pool; ``image_root`` and
    ``url_prefix`` (where the tool finds the images) checked before any work: one of them at most,
    a prefix not blank, neither for a text pool."""
    root = pool_image_root(manifest)
    given = tuple(n for n, v in (("image_root", image_root), ("image_url_prefix", url_prefix)) if v is not None)
    if root is None and given:
        raise InvalidInputError(f"{' and '.join(given)} {'say' if len(given) > 1 else 'says'} where an image pool's images are; "
                                f"pool {pool_name!r} holds texts", param=given)
    if len(given) > 1:
        raise InvalidInputError("image_url_prefix and image_root both say where the images are: pass one", param=given)
    if url_prefix is not None and not url_prefix.strip():
        raise InvalidInputError("image_url_prefix must not be empty", param="image_url_prefix")
    return root


def with_image_sources(frame: pd.DataFrame, manifest: Manifest, pool_name: str, *,
                       image_root: str | os.PathLike[str] | None = None, url_prefix: str | None = None) -> bool:
    """Give an image pool's picks table the ``image`` column an annotation tool loads (see
    :func:`image_sources`; marks ``frame.attrs["modality"]``); False for a text pool. Export and
    sync both go through here."""
    root = image_options(manifest, pool_name, image_root, url_prefix)
    if root is None:
        return False
    frame["image"] = image_sources(frame["text"].astype(str).tolist(), root, image_root=image_root, url_prefix=url_prefix)
    frame.attrs["modality"] = "image"
    return True


def image_sources(rels: list[str], root: Path, *, image_root: str | os.PathLike[str] | None = None,
                  url_prefix: str | None = None) -> list[str]:
    """What an annotation tool loads for each image: ``url_prefix`` + the URL-quoted relative path
    (images served over HTTP, or Label Studio's ``/data/local-files/?d=...``), else the file path
    under ``image_root`` (the images moved or mounted elsewhere), else under the pool's root."""
    if url_prefix is not None:  # checked by image_options
        return [url_prefix + quote(r) for r in rels]
    base = Path(image_root).expanduser().resolve() if image_root is not None else root
    return [str(base / r) for r in rels]
