"""The audit report in a real browser: headless Chromium draws its plots (issue: report in a browser).

The browser tests screenshot report.html with ``benchmarks/report_screenshot.py`` and count the
plot colours in the PNG; a copy of the page without its SVG elements is the negative control.
They skip where Debian's chromium is missing (``apt-get install chromium``). The PNG decoder and
the colour counting are tested on images built here, with or without a browser.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "report_screenshot.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("report_screenshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


rs = _load_script()

PLOTS = ["#c33", "#36c", "#e83", "#7b3294", "#008837"]  # ROC curves; marginal bars; distance chart
WIDTH, HEIGHT = 1200, 8000
MIN_PIXELS = 300  # each plot colour, on the real page
STRAY_PIXELS = 20  # at most, on the page without SVG (anti-aliased red text may come close to #c33)


# -- a PNG encoder for the decoder's tests -------------------------------------------------

def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filter(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out.append((x - pred) & 0xFF)
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(width: int, height: int, channels: int, data: bytes, filters: list[int], *,
               depth: int = 8, colour: int | None = None, interlace: int = 0) -> bytes:
    """8-bit RGB/RGBA, row ``y`` filtered with ``filters[y % len(filters)]``."""
    stride = width * channels
    raw, prev = bytearray(), bytes(stride)
    for y in range(height):
        line = data[y * stride:(y + 1) * stride]
        kind = filters[y % len(filters)]
        raw += bytes([kind]) + _filter(kind, line, prev, channels)
        prev = line
    colour = {3: 2, 4: 6}[channels] if colour is None else colour
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    z = zlib.compress(bytes(raw))  # split over two IDAT chunks, an ancillary chunk before them
    return (rs.PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"tEXt", b"Comment\x00test")
            + _chunk(b"IDAT", z[:7]) + _chunk(b"IDAT", z[7:]) + _chunk(b"IEND", b""))


def _pixels(width: int, height: int, channels: int) -> bytes:
    """Known, varied pixels (gradients, wrap-around, a flat stretch) so every predictor matters."""
    out = bytearray()
    for y in range(height):
        for x in range(width):
            px = [(x * 37 + y * 11) % 256, (255 - x * 23 + y * y) % 256, (x * y * 7 + 200) % 256, (x + y * 50) % 256]
            if y == 3:
                px = [255, 255, 255, 255]
            out += bytes(px[:channels])
    return bytes(out)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0, 4, 1]])
def test_decoder_reads_every_filter_type(channels, filters):
    width, height = 7, 9
    data = _pixels(width, height, channels)
    image = rs.decode_png(encode_png(width, height, channels, data, filters))
    assert (image.width, image.height, image.channels) == (width, height, channels)
    assert image.data == data
    assert image.pixel(2, 5) == tuple(data[(5 * width + 2) * channels:(5 * width + 3) * channels])


def test_decoder_fast_paths_match_the_plain_filters():
    """Rows of one colour (the page background) take shortcuts: they must agree with the loops."""
    width, height = 6, 6
    rows = [bytes([255, 255, 255]) * width, bytes([255, 255, 255]) * width, bytes([10, 20, 30]) * width,
            bytes([10, 20, 30]) * width, bytes([0, 0, 0]) * width, bytes([0, 0, 0]) * width]
    data = b"".join(rows)
    for kind in range(5):
        assert rs.decode_png(encode_png(width, height, 3, data, [kind])).data == data


@pytest.mark.parametrize("change", [
    dict(depth=16), dict(colour=3), dict(colour=0), dict(interlace=1),
])
def test_decoder_refuses_what_it_does_not_read(change):
    data = _pixels(4, 4, 3)
    with pytest.raises(ValueError):
        rs.decode_png(encode_png(4, 4, 3, data, [0], **change))


def test_decoder_refuses_damage():
    good = encode_png(4, 4, 3, _pixels(4, 4, 3), [1])
    assert rs.decode_png(good).width == 4
    damaged = bytearray(good)
    damaged[-20] ^= 0xFF  # inside the last IDAT: bad CRC
    for bad in (b"GIF89a" + good[6:], bytes(damaged), good[:-12], good[:40]):
        with pytest.raises(ValueError):
            rs.decode_png(bad)
    ihdr = struct.pack(">IIBBBBB", 4, 1, 8, 2, 0, 0, 0)
    png = (rs.PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x05" + bytes(12)))
           + _chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="filter type 5"):
        rs.decode_png(png)


def test_count_colours_has_a_tolerance_and_ignores_alpha():
    px = [(204, 51, 51, 255), (207, 48, 54, 255), (211, 51, 51, 255), (51, 102, 204, 0)] + [(255, 255, 255, 255)] * 3
    image = rs.Image(len(px), 1, 4, b"".join(bytes(p) for p in px))
    assert rs.count_colours(image, ["#c33", "#36c", "#e83"], tolerance=3) == {"#c33": 2, "#36c": 1, "#e83": 0}
    assert rs.count_colours(image, ["#cc3333"], tolerance=7) == {"#cc3333": 3}
    assert rs.parse_colour("#e83") == (238, 136, 51)
    assert rs.background(image) == ((255, 255, 255), 4)
    assert rs.content_bottom(image) == 1
    blank = rs.Image(3, 2, 3, bytes([255]) * 18)
    assert rs.background(blank) == ((255, 255, 255), 0) and rs.content_bottom(blank) == 0
    assert isinstance(rs.histogram(blank), Counter)


# -- the browser ---------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="no chromium on PATH: install it with apt-get install chromium (Debian) to run the browser test")

SVG = re.compile(r"<svg\b.*?</svg>", re.S | re.I)
# Each plot: the start of its SVG's aria-label, and its own colours; each is also drawn alone, on a
# copy of the page without the others, so a colour is shown to come from its own plot.
PLOT_PARTS = {"ROC curve of": ["#c33"], "real vs synthetic marginal shares": ["#36c", "#e83"],
              "distance to the closest synthetic row": ["#7b3294", "#008837"]}


def keep_svgs(html: str, label: str | None) -> tuple[str, int]:
    """The page without the SVG elements whose aria-label does not start with ``label``
    (``None``: without any); and how many were removed."""
    removed = 0

    def sub(m: re.Match) -> str:
        nonlocal removed
        if label is not None and f"aria-label='{label}" in m.group(0)[:400]:
            return m.group(0)
        removed += 1
        return ""

    return SVG.sub(sub, html), removed


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    if shutil.which("chromium") is None:
        pytest.skip("no chromium on PATH: install it with apt-get install chromium")
    tmp = tmp_path_factory.mktemp("browser")
    page = rs.build_demo(tmp / "report") / "report.html"
    html = page.read_text()
    pages, removed = {"report": page}, {"report": 0}
    for name, label in [("no_svg", None), *((lab, lab) for lab in PLOT_PARTS)]:
        pages[name] = tmp / f"{len(pages)}.html"
        text, removed[name] = keep_svgs(html, label)
        pages[name].write_text(text)
    images = {name: rs.decode_png(rs.screenshot(path, tmp / f"{path.stem}.png", width=WIDTH, height=HEIGHT,
                                                timeout=90).read_bytes())
              for name, path in pages.items()}
    return images, html, removed


@needs_chromium
def test_screenshot_has_the_window_size_and_the_whole_page(shots):
    images, _, _ = shots
    for image in images.values():
        assert (image.width, image.height) == (WIDTH, HEIGHT)
        bottom = rs.content_bottom(image)
        assert 500 < bottom < HEIGHT - 8, "the page is cut: raise HEIGHT"


@needs_chromium
def test_the_plots_are_drawn(shots):
    images, html, removed = shots
    assert html.count("aria-label='ROC curve of") == 4 and removed["no_svg"] >= 5
    counts, problems = rs.check(images["report"], dict.fromkeys(PLOTS, "plot"))
    assert not problems
    assert all(counts[c] >= MIN_PIXELS for c in PLOTS), counts


@needs_chromium
@pytest.mark.parametrize("label", list(PLOT_PARTS))
def test_each_plot_draws_its_own_colours(shots, label):
    """Only this plot's SVG kept: its colours are there, the other plots' are not."""
    images, _, removed = shots
    assert 0 < removed[label] < removed["no_svg"]
    counts = rs.count_colours(images[label], PLOTS)
    own = PLOT_PARTS[label]
    assert all(counts[c] >= MIN_PIXELS for c in own), counts
    assert all(counts[c] <= STRAY_PIXELS for c in PLOTS if c not in own), counts


@needs_chromium
def test_without_svg_the_colours_are_gone(shots):
    """The negative control: the same page without its SVG elements, so the check can fail."""
    images, _, _ = shots
    counts, problems = rs.check(images["no_svg"], dict.fromkeys(PLOTS, "plot"))
    assert all(counts[c] <= STRAY_PIXELS for c in PLOTS), counts
    assert len(problems) == len(PLOTS)  # each colour absent, and nothing else wrong
    _, other = rs.background(images["no_svg"])
    assert other > 10_000  # the text is still there: the page did render
