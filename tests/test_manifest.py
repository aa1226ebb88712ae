"""fmal.pool.manifest: the manifest dataclass reads and writes the JSON fmal wrote before it, key
for key (existing pools open and are rewritten unchanged), and a new build writes the same keys."""

from __future__ import annotations

import json

import pytest

from fmal.exceptions import CorruptPoolError, InvalidInputError
from fmal.pool.manifest import BuildSettings, Manifest

#: written by fmal 0.1.0 before fmal.pool (the demo pool: examples/demo.sh), verbatim
DEMO = json.loads("""{
  "dim": 384, "dtype": "float32", "embedding": {"batch_size": 64, "chunk_size": 2048},
  "file_checks": {
    "embeddings.npy": {"sha256": "sha256:b3c7258ae82035469d4693c0873691361c338a473496769e924eb0287a871270", "shape": [1000, 384], "size": 1536128},
    "index.faiss": {"sha256": "sha256:2af3f4509ab6354f96edb12463005e352cac5f43a8c9bb050f76e397a39dc95d", "shape": [1000, 384], "size": 1536045},
    "rows.parquet": {"sha256": "sha256:c118996f86e5f6ef8ecf587124d8adeaecac27ed935817b5121c4736a275f3b8", "shape": [1000, 2], "size": 43846}
  },
  "files": {"embeddings": "embeddings.npy", "index": "index.faiss", "rows": "rows.parquet"},
  "fmal_version": "0.1.0", "format": "fmal-pool", "format_version": 1,
  "index": {
    "bytes_per_vector": 1536, "dim": 384, "factory": "Flat", "max_memory": 4294967296, "metric": "inner_product",
    "nlist": 0, "note": "", "ntotal": 1000, "pq_m": 0,
    "reason": "exact search: the pool is small enough and fits the budget", "recall_at_10": 1.0,
    "recall_queries": "exact", "recall_target": 0.95, "search_params": {}, "type": "flat", "warnings": []
  },
  "input": {
    "fingerprint": "sha256:ec441dbec1d784662e0cc5f1b185fa3e29a38a29afb29d1d0b7ab185b733630f", "format": "csv",
    "id_col": "id", "ids_generated": false, "path": "examples/data/trec6_demo.csv", "text_col": "text"
  },
  "model": {
    "backend": "onnx-int8", "fingerprint": "sha256:f0870e08ea4400a0d9bbd7fff77fd1eda841e01a2ad3ee4ba825948b42d50fff",
    "max_seq_length": 256, "name": "bundled:all-MiniLM-L6-v2",
    "onnx_file": "/root/.cache/fmal/onnx/f0870e08ea4400a0d9bbd7fff77fd1ed/model-int8.onnx", "onnx_fused": true, "threads": 2
  },
  "n_rows": 1000, "n_unique_texts": 1000, "normalized": true
}""")

#: an older pool (before --precision, backends and file checks) with nulls, an appended external
#: pool with keys only it has: absent stays absent, null stays null, unknown keys are kept
OLD = {"format": "fmal-pool", "format_version": 1, "fmal_version": "0.0.9", "n_rows": 3, "n_unique_texts": 2, "dim": 8,
       "normalized": True, "model": {"name": "m", "fingerprint": "f", "max_seq_length": None},
       "input": {"path": "in.csv", "format": "csv", "fingerprint": "sha256:x", "text_col": "text", "id_col": None},
       "index": {"type": "flat", "ntotal": 3}, "files": {"rows": "rows.parquet"}}
EXTERNAL = {**OLD, "dtype": "float16",
            "model": {"name": "external", "fingerprint": "external:l2", "backend": "external", "source": "v.npy",
                      "source_format": "npy", "ids_source": None, "max_seq_length": None, "threads": None, "onnx_file": None},
            "input": {"path": "v.npy", "format": "npy", "fingerprint": "sha256:y", "text_col": None, "id_col": None,
                      "ids_generated": True, "ids_source": None, "embeddings": True},
            "additions": [{"path": "more.npy", "n_rows_added": 1}], "something_new": {"a": 1}}


@pytest.mark.parametrize("doc", [DEMO, OLD, EXTERNAL], ids=["demo", "old", "external"])
def test_a_manifest_of_the_previous_code_round_trips_unchanged(doc):
    m = Manifest.from_json(json.loads(json.dumps(doc)))
    assert m.to_json() == doc
    assert json.dumps(m.to_json(), sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_fields_read_as_attributes_with_the_old_defaults():
    m = Manifest.from_json(DEMO)
    assert (m.n_rows, m.dim, m.precision, m.backend) == (1000, 384, "float32", "onnx-int8")
    assert m.model.name == "bundled:all-MiniLM-L6-v2" and m.input.id_col == "id" and m.index.search_params == {}
    assert m.index.extra["recall_target"] == 0.95 and set(m.file_records) == {"embeddings.npy", "index.faiss", "rows.parquet"}
    old = Manifest.from_json(OLD)
    assert (old.precision, old.backend, old.file_records, old.index.metric) == ("float32", "torch", {}, None)


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.pop("model"), "field(s) model missing or invalid"),
    (lambda d: d.update(n_rows="forty"), "field(s) n_rows missing or invalid"),
    (lambda d: d["index"].pop("ntotal"), "field index.ntotal is missing"),
    (lambda d: d["index"].update(recall_at_10="high"), "field index.recall_at_10 must be an integer >= 0 or a number >= 0"),
    (lambda d: d.update(dtype="int8"), "field dtype must be float32 or float16"),
])
def test_a_bad_field_is_one_line_naming_it(edit, needle):
    d = json.loads(json.dumps(DEMO))
    edit(d)
    with pytest.raises(CorruptPoolError, match="manifest.json: ") as exc:
        Manifest.from_json(d)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_build_settings_check_their_values():
    assert BuildSettings().embedding == {"batch_size": 64, "chunk_size": 2048}
    with pytest.raises(InvalidInputError, match=r"--precision must be one of \['float32', 'float16'\], got 'int8'"):
        BuildSettings(precision="int8")
    with pytest.raises(InvalidInputError, match=r"index must be one of \[auto, flat, .*\], got 'hnsw2'"):
        BuildSettings(index_kind="hnsw2")
