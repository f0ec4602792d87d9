"""Open an audit report in a real browser and check that it holds its plots.

``hgan.audit.report.write_report`` writes ``report.html``: one self-contained page (inline
CSS, inline SVG, no script). This script opens that page in headless Chromium, saves a
screenshot as PNG, decodes the PNG (standard library only: ``zlib``) and counts, for each
plot colour, the pixels that have it (within a few units per channel, for anti-aliasing):

    #c33  ROC curve of each membership attack (polyline stroke)
    #36c  real (training rows) bars of the marginals chart
    #e83  synthetic bars of the marginals chart
    #7b3294, #008837  training and never-seen rows of the distance-to-closest-record chart

(``tests/audit/test_report_browser.py`` also screenshots copies of the page that keep only one
plot's SVG elements, so each colour is shown to come from its own plot.)

It exits 1 if any of these colours is absent (fewer than ``--min-pixels`` pixels), if the
page is blank, or if the page reaches the bottom of the window (the screenshot may have cut
it: raise ``--height``); 2 if Chromium is missing or fails.

Usage::

    python benchmarks/report_screenshot.py REPORT_DIR --png out.png   # an existing report
    python benchmarks/report_screenshot.py --demo --png out.png       # a quick report first

``--demo`` audits the mixed test table (``tests.conftest.mixed_frame(400, seed=0)`` as
training rows and as "synthetic" rows, ``mixed_frame(200, seed=1)`` as holdout) into a
temporary directory, a few seconds. Needs Debian's ``chromium`` on ``PATH``
(``apt-get install chromium``) or ``--chromium PATH``. ``tests/audit/test_report_browser.py``
imports the functions below (``decode_png``, ``count_colours``, ``screenshot``, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]

PLOT_COLOURS: dict[str, str] = {
    "#c33": "ROC curves",
    "#36c": "real bars of the marginals",
    "#e83": "synthetic bars of the marginals",
    "#7b3294": "training rows of the distance-to-closest-record chart",
    "#008837": "never-seen rows of the distance-to-closest-record chart",
}
TOLERANCE = 6  # per channel, 0-255
MIN_PIXELS = 20  # fewer than this and a colour counts as absent (stray anti-aliased text)
WIDTH, HEIGHT = 1200, 8000  # the report is about 6000 px tall at 1200 px wide
TIMEOUT = 90.0

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


class ChromiumMissing(RuntimeError):
    """No chromium binary: ``apt-get install chromium``."""


class Image(NamedTuple):
    """A decoded 8-bit image: ``data`` holds ``height`` rows of ``width * channels`` bytes."""

    width: int
    height: int
    channels: int  # 3: RGB, 4: RGBA
    data: bytes

    def row(self, y: int) -> bytes:
        stride = self.width * self.channels
        return self.data[y * stride:(y + 1) * stride]

    def pixel(self, x: int, y: int) -> tuple[int, ...]:
        i = (y * self.width + x) * self.channels
        return tuple(self.data[i:i + self.channels])


# -- PNG decoding (standard library only) --------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> channels: RGB, RGBA
_MASKS: dict[int, tuple[int, int]] = {}


def _add_rows(x: bytes, y: bytes) -> bytes:
    """Bytewise ``(x + y) mod 256`` on two equal-length rows, with one big-integer addition."""
    n = len(x)
    if n not in _MASKS:
        _MASKS[n] = (int.from_bytes(b"\x7f" * n, "little"), int.from_bytes(b"\x80" * n, "little"))
    low, high = _MASKS[n]
    a, b = int.from_bytes(x, "little"), int.from_bytes(y, "little")
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "little")


def _unfilter_sub(line: bytearray, bpp: int) -> None:
    if not any(line[bpp:]):  # a row of one colour
        line[bpp:] = line[:bpp] * (len(line) // bpp - 1)
        return
    for i in range(bpp, len(line)):
        line[i] = (line[i] + line[i - bpp]) & 0xFF


def _unfilter_average(line: bytearray, prev: bytes, bpp: int) -> None:
    for i in range(bpp):
        line[i] = (line[i] + (prev[i] >> 1)) & 0xFF
    for i in range(bpp, len(line)):
        line[i] = (line[i] + ((line[i - bpp] + prev[i]) >> 1)) & 0xFF


def _unfilter_paeth(line: bytearray, prev: bytes, bpp: int) -> None:
    if prev == prev[:bpp] * (len(prev) // bpp) and not any(line):
        line[:] = prev  # zero residuals under a row of one colour: the same row
        return
    for i in range(bpp):
        line[i] = (line[i] + prev[i]) & 0xFF  # a = c = 0: the predictor is b
    for i in range(bpp, len(line)):
        a, b, c = line[i - bpp], prev[i], prev[i - bpp]
        pa = b - c if b > c else c - b  # |p - a| with p = a + b - c
        pb = a - c if a > c else c - a  # |p - b|
        pc = a + b - c - c  # p - c
        if pc < 0:
            pc = -pc
        if pa <= pb and pa <= pc:
            line[i] = (line[i] + a) & 0xFF
        elif pb <= pc:
            line[i] = (line[i] + b) & 0xFF
        else:
            line[i] = (line[i] + c) & 0xFF


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (all five filter types).

    Checks the signature, every chunk's CRC and the length of the image data. Raises
    ``ValueError`` for anything else: another bit depth or colour type (grey, palette),
    interlacing, a truncated or corrupt file.
    """
    if data[:8] != PNG_SIGNATURE:
        raise ValueError("not a PNG file (bad signature)")
    pos, header, idat, ended = 8, None, [], False
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError("truncated PNG chunk")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in PNG chunk {kind!r}")
        pos += 12 + length
        if header is None and kind != b"IHDR":
            raise ValueError("PNG does not start with IHDR")
        if kind == b"IHDR":
            if length != 13:
                raise ValueError("bad IHDR length")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
    if header is None or not ended:
        raise ValueError("truncated PNG (no IHDR or no IEND)")
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in _CHANNELS:
        raise ValueError(f"unsupported PNG: bit depth {depth}, colour type {colour} "
                         f"(only 8-bit RGB and RGBA)")
    if compression != 0 or filtering != 0:
        raise ValueError("unsupported PNG compression or filter method")
    if interlace != 0:
        raise ValueError("unsupported PNG: interlaced")
    if width == 0 or height == 0:
        raise ValueError("PNG with no pixels")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ValueError(f"corrupt PNG image data: {exc}") from None
    bpp = _CHANNELS[colour]
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise ValueError(f"PNG image data is {len(raw)} bytes, expected {height * (stride + 1)}")
    rows, prev = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 0:
            pass
        elif kind == 1:
            _unfilter_sub(line, bpp)
        elif kind == 2:
            line = bytearray(_add_rows(line, prev))
        elif kind == 3:
            _unfilter_average(line, prev, bpp)
        elif kind == 4:
            _unfilter_paeth(line, prev, bpp)
        else:
            raise ValueError(f"bad PNG filter type {kind} in row {y}")
        prev = bytes(line)
        rows.append(prev)
    return Image(width, height, bpp, b"".join(rows))


# -- colours -------------------------------------------------------------------------------

def parse_colour(colour: str) -> tuple[int, int, int]:
    """``'#c33'`` or ``'#cc3333'`` -> ``(204, 51, 51)``."""
    h = colour.strip().lstrip("#")
    if len(h) == 3:
        h = "".join(ch * 2 for ch in h)
    if len(h) != 6:
        raise ValueError(f"not a colour: {colour!r}")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def histogram(image: Image) -> Counter:
    """How many pixels have each ``(r, g, b)`` (alpha ignored: a screenshot is opaque)."""
    d, ch = image.data, image.channels
    return Counter(zip(d[0::ch], d[1::ch], d[2::ch]))


def count_colours(image: Image | Counter, colours: Iterable[str],
                  tolerance: int = TOLERANCE) -> dict[str, int]:
    """For each colour (``'#rgb'``/``'#rrggbb'``), the pixels within ``tolerance`` per channel."""
    hist = image if isinstance(image, Counter) else histogram(image)
    out = {}
    for colour in colours:
        r, g, b = parse_colour(colour)
        out[colour] = sum(n for (pr, pg, pb), n in hist.items()
                          if abs(pr - r) <= tolerance and abs(pg - g) <= tolerance and abs(pb - b) <= tolerance)
    return out


def background(image: Image | Counter) -> tuple[tuple[int, int, int], int]:
    """The most common colour and how many pixels do not have it (0: a blank page)."""
    hist = image if isinstance(image, Counter) else histogram(image)
    colour, n = hist.most_common(1)[0]
    return colour, sum(hist.values()) - n


def content_bottom(image: Image) -> int:
    """One past the last row that is not all one colour (0 for a blank image)."""
    for y in range(image.height - 1, -1, -1):
        row = image.row(y)
        if row != row[:image.channels] * image.width:
            return y + 1
    return 0


# -- the browser ---------------------------------------------------------------------------

def find_chromium(explicit: str | None = None) -> str:
    path = explicit or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise ChromiumMissing(f"chromium not found{f' at {explicit}' if explicit else ' on PATH'}: "
                              f"install it with apt-get install chromium")
    return path


def screenshot(html: str | Path, png: str | Path, *, width: int = WIDTH, height: int = HEIGHT,
               timeout: float = TIMEOUT, chromium: str | None = None) -> Path:
    """Screenshot ``html`` (a file) in headless Chromium, window ``width`` x ``height``, into ``png``."""
    binary = find_chromium(chromium)
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no such page: {html}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    profile = tempfile.mkdtemp(prefix="hgan-chromium-")
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
           f"--screenshot={png}", html.as_uri()]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # chromium and the helpers it started
            proc.communicate()
            raise RuntimeError(f"chromium did not finish within {timeout:g} s") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        tail = "\n".join(out.decode(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"chromium exited {proc.returncode} without a screenshot:\n{tail}")
    return png


def build_demo(out_dir: str | Path) -> Path:
    """A quick audit report on the mixed test table, written into the new ``out_dir``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from hgan.audit.report import write_report
    from hgan.audit.run import audit
    from tests.conftest import mixed_frame, mixed_schema

    train, holdout = mixed_frame(400, seed=0), mixed_frame(200, seed=1)
    report = audit(synthetic=train.copy(), train=train, holdout=holdout, schema=mixed_schema(), seed=0,
                   claimed_epsilon=1.0)
    return write_report(report, out_dir)


def check(image: Image, colours: dict[str, str] = PLOT_COLOURS, *, tolerance: int = TOLERANCE,
          min_pixels: int = MIN_PIXELS) -> tuple[dict[str, int], list[str]]:
    """The pixel count of each plot colour and the problems found (empty: all is well)."""
    hist = histogram(image)
    counts = count_colours(hist, colours, tolerance)
    problems = [f"{c} ({what}) absent: {counts[c]} pixels" for c, what in colours.items()
                if counts[c] < min_pixels]
    bg, other = background(hist)
    if other < 100:
        problems.append(f"the page is blank: {other} pixels differ from the background {bg}")
    bottom = content_bottom(image)
    if bottom > image.height - 8:
        problems.append(f"the page reaches the bottom of the {image.width}x{image.height} window "
                        f"and may be cut: raise --height")
    return counts, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report_dir", nargs="?", help="a directory holding report.html (or the page itself)")
    p.add_argument("--demo", action="store_true", help="build a quick report on the mixed test data first")
    p.add_argument("--png", required=True, help="where to write the screenshot")
    p.add_argument("--width", type=int, default=WIDTH)
    p.add_argument("--height", type=int, default=HEIGHT, help="window height: tall enough for the page")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds for chromium")
    p.add_argument("--tolerance", type=int, default=TOLERANCE, help="per channel, for anti-aliasing")
    p.add_argument("--min-pixels", type=int, default=MIN_PIXELS, help="fewer: the colour is absent")
    p.add_argument("--chromium", help="the chromium binary (default: chromium on PATH)")
    args = p.parse_args(argv)
    if args.demo == (args.report_dir is not None):
        p.error("give either REPORT_DIR or --demo")
    try:
        find_chromium(args.chromium)
    except ChromiumMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hgan-report-") as tmp:
        if args.demo:
            page = build_demo(Path(tmp) / "report") / "report.html"
            print(f"demo report: {page}")
        else:
            page = Path(args.report_dir)
            page = page / "report.html" if page.is_dir() else page
            if not page.is_file():
                print(f"error: no report page at {page}", file=sys.stderr)
                return 2
        try:
            png = screenshot(page, args.png, width=args.width, height=args.height, timeout=args.timeout,
                             chromium=args.chromium)
        except (RuntimeError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        image = decode_png(png.read_bytes())
    except ValueError as exc:
        print(f"error: {png}: {exc}", file=sys.stderr)
        return 2
    counts, problems = check(image, tolerance=args.tolerance, min_pixels=args.min_pixels)
    print(f"screenshot: {png} ({image.width}x{image.height}), page content ends at row {content_bottom(image)}")
    for colour, what in PLOT_COLOURS.items():
        print(f"  {colour}  {what:<28} {counts[colour]:>8} pixels")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
