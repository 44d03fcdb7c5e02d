"""Tools around DVC that make no output of the pipeline: `make exps` (experiments) and the offline `dvc plots` page (plots_page)."""
