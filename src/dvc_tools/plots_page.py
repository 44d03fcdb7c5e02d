"""The page `dvc plots show` fills, with its charting library inside, so that every chart draws offline.

Usage: python -m dvc_tools.plots_page <page.html>   (`make` writes .venv/share/dvc-plots/index.html)

DVC draws its charts with Vega, Vega-Lite and Vega-Embed, which its own page loads from a CDN: a
browser without internet shows the images and leaves every chart blank. `.dvc/config` names
this page instead (`plots.html_template`): the same page, with the three libraries written into
it, at the versions DVC's charts are made for. They come from the npm registry (`npm pack`),
each checked against its sha256 here, once per environment; the page `dvc plots show` and
`dvc plots diff` write then needs nothing else (about 0.8 MB).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from regression import PipelineError
from regression.files import write_bytes_atomic

# npm package -> (version, sha256 of its npm tarball): the versions dvc-render's page loads
# (`dvc_render.vega.VegaRenderer.SCRIPTS`; a test checks they agree). All three: BSD-3-Clause.
LIBRARIES = {
    "vega": ("5.20.2", "d77deab01d6104b1239228720721f93003e60797d2faced7ffdd759fa70f989d"),
    "vega-lite": ("5.2.0", "f64ca4745f043447ac86b67dc9e9592ec2b85ac8b8dafc35faf970f142463e4b"),
    "vega-embed": ("6.18.2", "93aeee312e92077b0252ef026c0fe0ec8fa430c19825aeada6cd3a6804e68e1b"),
}
# DVC fills {refresh_tag} and {plot_divs}; {scripts}, where its page loads the libraries from the
# CDN, is left out.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
LIBRARIES
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


# Without npm: the page as DVC's own, loading the same versions from the CDN.
ONLINE_SCRIPTS = "\n".join(f'    <script src="https://cdn.jsdelivr.net/npm/{package}@{version}"></script>'
                           for package, (version, _) in LIBRARIES.items())


class PlotsPageError(PipelineError):
    """A library could not be fetched, or is not the one pinned."""


def fetch(package: str, version: str, sha256: str, folder: Path) -> Path:
    """The package's npm tarball, fetched into `folder` by `npm pack` and checked."""
    npm = shutil.which("npm")
    if npm is None:
        raise PlotsPageError(f"npm is needed once, to fetch {package} {version} for `dvc plots show`'s "
                             "offline page: apt-get install npm")
    command = [npm, "pack", "--silent", "--pack-destination", str(folder), f"{package}@{version}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    tarball = folder / f"{package}-{version}.tgz"
    if done.returncode != 0 or not tarball.is_file():
        reason = (done.stderr.strip().splitlines() or ["no tarball"])[-1]
        raise PlotsPageError(f"npm pack {package}@{version} failed: {reason}")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != sha256:
        raise PlotsPageError(f"npm's {package}@{version} has sha256 {digest}, not the pinned {sha256}")
    return tarball


def script(tarball: Path, package: str, version: str) -> str:
    """The package's minified browser build as an inline <script>."""
    with tarfile.open(tarball) as archive:
        code = archive.extractfile(f"package/build/{package}.min.js").read().decode()
    # `</script` inside the code would end the element early; `<\/` is the same string to JavaScript.
    code = code.replace("</script", "<\\/script")
    return f"    <script>/* {package} {version}, BSD-3-Clause, from npm */\n{code}\n    </script>"


def page(folder: Path) -> str:
    scripts = [script(fetch(package, version, sha256, folder), package, version)
               for package, (version, sha256) in LIBRARIES.items()]
    return PAGE.replace("LIBRARIES", "\n".join(scripts))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    target = Path(argv[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as folder:
            text = page(Path(folder))
    except PlotsPageError as error:
        # DVC fails if the page .dvc/config names is missing: write one that loads the libraries
        # from their CDN, as DVC's own does, dated 1970 so that the next `make` tries again.
        write_bytes_atomic(target, PAGE.replace("LIBRARIES", ONLINE_SCRIPTS).encode())
        os.utime(target, (0, 0))
        print(f"warning: {error}; until then `dvc plots show` draws its charts only online "
              f"({target} loads Vega from its CDN)", file=sys.stderr)
        return 0
    write_bytes_atomic(target, text.encode())
    print(f"{target}: the page `dvc plots show` fills, with Vega inside ({len(text) // 1000} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
