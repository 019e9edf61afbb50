"""results/REPORT.md (build.py, markdown.py, sweeps.py) and every PNG the CLI writes (plotting.py and *_plot.py)."""
