#!/usr/bin/env python3
"""Streams the text column of Parquet files (FineWeb, FineWeb-Edu, The Pile's Parquet exports,
...) as JSONL on stdout, one {"text": ...} document per row, for `ouro prepare -`:

    .venv/bin/python tools/parquet_to_jsonl.py fineweb/sample/10BT/*.parquet \\
      | build/ouro prepare - --jsonl -t data/gpt2 -o data/fineweb/fineweb --shard-tokens 100000000

Memory holds one record batch (--batch-rows rows) at a time, whatever the file sizes; rows
whose text is null are skipped and counted on stderr. pyarrow comes from PyPI (tools/setup.sh)."""
import argparse
import json
import sys

import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="Parquet files, read in the order given")
    ap.add_argument("--column", default="text", help="the column holding each document's text")
    ap.add_argument("--key", default="text", help="the JSON key to write it under (ouro prepare --text-key)")
    ap.add_argument("--batch-rows", type=int, default=4096, help="rows read per record batch")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many documents (0 = all)")
    a = ap.parse_args()
    out = sys.stdout
    written = skipped = 0
    try:
        for path in a.files:
            pf = pq.ParquetFile(path)
            if a.column not in pf.schema_arrow.names:
                sys.exit(f"parquet_to_jsonl: {path} has no column '{a.column}' (columns: {', '.join(pf.schema_arrow.names)})")
            for batch in pf.iter_batches(batch_size=a.batch_rows, columns=[a.column]):
                for text in batch.column(0).to_pylist():
                    if text is None:
                        skipped += 1
                        continue
                    if isinstance(text, bytes):
                        text = text.decode("utf-8", errors="replace")
                    out.write(json.dumps({a.key: text}, ensure_ascii=False))
                    out.write("\n")
                    written += 1
                    if a.limit and written >= a.limit:
                        return
    except BrokenPipeError:  # the reader stopped (e.g. ouro prepare failed): say nothing more
        sys.stderr.close()
        sys.exit(1)
    finally:
        if skipped:
            print(f"parquet_to_jsonl: skipped {skipped} rows with a null '{a.column}'", file=sys.stderr)
        print(f"parquet_to_jsonl: {written} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
