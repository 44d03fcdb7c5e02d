"""Stage `download`: fetch, verify and decompress the Fashion-MNIST IDX files into data/fashion-mnist."""

from regression import stage
from regression.download import download_all, sources_with_override

OUT = "data/fashion-mnist"


def main(params, argv):
    p = params.download
    failures = download_all(p.files, sources_with_override(p.sources), OUT, p.timeout_seconds)
    for failure in failures:
        print(f"skipped a source: {failure}")
    print(f"{OUT}: {len(p.files)} files verified")


if __name__ == "__main__":
    stage.run(main)
