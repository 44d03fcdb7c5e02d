"""Stage `download`: fetch, verify and decompress the Fashion-MNIST IDX files into one folder.

Usage: python stages/download.py <output folder>
"""

from regression import stage
from regression.download import download_all, sources_with_override


def main(params, args):
    p = params.download
    failures = download_all(p.files, sources_with_override(p.sources), args.out, p.timeout_seconds)
    for failure in failures:
        print(f"skipped a source: {failure}")
    print(f"{args.out}: {len(p.files)} files verified")


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("out", help="folder to write the decompressed IDX files to")
    stage.run(main, parser, owns="download")
