"""Tools around DVC that make no output of the pipeline: `make exps` (experiments), `make report` (what a change did) and the offline `dvc plots` page (plots_page)."""
