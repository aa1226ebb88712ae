"""Test helpers for image pools: a tiny random-weight CLIP saved as a sentence-transformers folder
(nothing can be downloaded here), and small images of scikit-learn's digits drawn to PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level BPE alphabet: every byte as a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_clip_tokenizer_files(out: Path) -> tuple[Path, Path]:
    """A small CLIP BPE vocabulary: every byte, every byte ending a word, a few merges, the two specials."""
    chars = list(_bytes_to_unicode().values())
    merges = ["t h", "th e</w>", "c a", "ca t</w>"]
    vocab: dict[str, int] = {}
    for tok in chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(tok, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return out / "vocab.json", out / "merges.txt"


def build_tiny_clip(out: Path, image_size: int = 32) -> Path:
    """A random-weight CLIP (hidden 32, 2 layers per tower, projection 16) with its tokenizer and
    image processor, saved by sentence-transformers into ``out/st``; returns that folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = write_clip_tokenizer_files(out)
    tok = CLIPTokenizer(str(vocab_file), str(merges_file))
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64),
        projection_dim=16,
    )
    raw = out / "hf"
    CLIPModel(cfg).eval().save_pretrained(raw)
    size = {"shortest_edge": image_size}
    crop = {"height": image_size, "width": image_size}
    CLIPProcessor(image_processor=CLIPImageProcessor(size=size, crop_size=crop), tokenizer=tok).save_pretrained(raw)
    st_dir = out / "st"
    SentenceTransformer(str(raw), device="cpu").save(str(st_dir))
    return st_dir


def write_digit_pngs(folder: Path, per_class: int = 4, size: int = 32) -> dict[str, str]:
    """``per_class`` images of each digit of scikit-learn's ``load_digits`` as RGB PNGs in
    ``folder/<digit>/NN.png``; returns {relative path: digit}."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    labels: dict[str, str] = {}
    for digit in range(10):
        rows = np.flatnonzero(d.target == digit)[:per_class]
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for k, r in enumerate(rows):
            px = (d.images[r] * (255 / 16)).astype(np.uint8)
            rel = f"{digit}/{k:02d}.png"
            Image.fromarray(px, mode="L").resize((size, size), Image.NEAREST).convert("RGB").save(folder / rel)
            labels[rel] = str(digit)
    return labels
