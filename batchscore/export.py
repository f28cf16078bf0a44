"""`batchscore export`: scores.h5 as a Parquet table that joins a data team's tables, one row per image.

HDF5 stays the home of full output arrays; the export carries what a table needs: the key, the top-k
classes (names when the run had a class list, else indices) and scores as list columns, status and
error, and the run's identity (model SHA-256, precision, backend, run id, creation time) on every row,
so exports of many runs can be stacked and told apart. Rows are converted in chunks (one row group
each), so memory stays flat for any archive size; the file is published atomically.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from .config import ConfigError
from .writer import STATUS_OK, atomic_path, publish

CHUNK_ROWS = 1 << 18
RUN_COLUMNS = ("model_sha256", "precision", "backend", "run_id")


def _plain(value: object) -> object:
    """An HDF5 attribute as JSON: numpy scalars and arrays to Python values."""
    return value.tolist() if hasattr(value, "tolist") else value


def export_parquet(results: Path, output: Path | None = None, chunk_rows: int = CHUNK_ROWS) -> Path:
    """Write RESULTS/scores.h5 as Parquet (default RESULTS/scores.parquet); returns the file written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'batchscore[parquet]'") from None
    source = Path(results) / "scores.h5"
    if not source.is_file():
        raise ConfigError(f"{source} not found: give the output folder of a finished run")
    output = Path(output) if output else source.with_suffix(".parquet")
    with h5py.File(source, "r") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        classes = np.asarray(attrs.get("classes", []), dtype=object)
        schema = pa.schema([
            ("key", pa.string()),
            ("topk_class", pa.list_(pa.string() if len(classes) else pa.int32())),
            ("topk_score", pa.list_(pa.float32())),
            ("status", pa.string()),
            ("error", pa.string()),
            *((name, pa.string()) for name in RUN_COLUMNS),
            ("created", pa.timestamp("ms", tz="UTC")),  # Parquet stores ms at the coarsest
        ], metadata={"batchscore": json.dumps(attrs)})
        created = datetime.fromisoformat(attrs["created"]) if "created" in attrs else None
        tmp = atomic_path(output)
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                for start in range(0, len(f["key"]), chunk_rows):
                    rows = slice(start, start + chunk_rows)
                    idx, ok = f["topk_index"][rows], f["status"][rows] == STATUS_OK
                    errors = f["error"].asstr(errors="backslashreplace")[rows]
                    offsets = pa.array(np.arange(0, idx.size + 1, idx.shape[1], dtype=np.int32))
                    names = classes[np.where(ok[:, None], idx, 0)] if len(classes) else idx
                    n = len(idx)
                    writer.write_table(pa.table([
                        pa.array(f["key"].asstr(errors="backslashreplace")[rows]),  # Parquet strings are UTF-8
                        pa.ListArray.from_arrays(offsets, pa.array(names.ravel()), mask=pa.array(~ok)),
                        pa.ListArray.from_arrays(offsets, pa.array(f["topk_score"][rows].ravel()), mask=pa.array(~ok)),
                        pa.array(np.where(ok, "ok", "error")),
                        pa.array(errors, mask=errors == ""),
                        *(pa.array([attrs.get(name)] * n, pa.string()) for name in RUN_COLUMNS),
                        pa.array([created] * n, schema.field("created").type),
                    ], schema=schema))
            publish(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    return output
