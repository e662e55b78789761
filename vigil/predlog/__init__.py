"""The prediction log: served rows and late labels as Parquet, queried with DuckDB.

files.py (layout, atomic writes, scan, compaction, retention), writer.py (the buffered,
sampled row writer and the label writer), query.py (DuckDB views, export, stats). The
service's profile agent writes rows, the monitor writes labels, the CLI reads.
"""
