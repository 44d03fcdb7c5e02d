"""Stage `download@<dataset>`: fetch, verify and decompress a dataset's IDX files into one folder.

Usage: python stages/download.py <dataset> <output folder>
"""

from regression import stage
from regression.download import download_all, sources_with_override


def main(params, args):
    row = params.datasets[args.dataset]
    sources = sources_with_override(row.sources, row.source_env)
    for failure in download_all(row.files, sources, args.out, row.timeout_seconds, row.source_env):
        print(f"skipped a source: {failure}")
    print(f"{args.out}: {len(row.files)} files verified")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("dataset", help="a row of `datasets` in params.yaml")
    parser.add_argument("out", help="folder to write the decompressed IDX files to")
    stage.run(main, parser, owns=lambda args: f"datasets.{args.dataset}")
