"""Sweeps: points (config x batch x lengths x engine) measured beside their predictions, one JSON line each.

points.py builds, runs and records points; options.py turns a sweep's arguments into engine options; rows.py reads
rows back (passes merged, predictions recomputed); results_io.py the append-only, resumable JSONL files; metadata.py
and revision.py what every row records about the machine and the code; machine_reference.py and drift.py how fast the
machine itself ran around each point; ray_fanout.py the same points as Ray tasks.
"""
