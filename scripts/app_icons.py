"""Draw the web app's PNG icons (the installable PWA needs PNGs: 192 and 512 px, a maskable
one whose star stays inside the 80 % safe zone, and a 180 px Apple touch icon) from the same
star as ``icon.svg``. Run once after changing the design:
``.venv/bin/python scripts/app_icons.py``; the PNGs are committed."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

APP = Path(__file__).resolve().parents[1] / "src/starry_guide/serve/web/app"
BACKGROUND = (7, 11, 22, 255)  # #070b16, the theme colour
STAR = (143, 184, 255, 255)  # #8fb8ff
#: the star of icon.svg (a 64 x 64 box)
POINTS = [(32, 10), (37.6, 26.1), (54, 26.1), (40.1, 36.3), (45.4, 52.9), (32, 42.7),
          (18.6, 52.9), (23.9, 36.3), (10, 26.1), (26.4, 26.1)]


def draw(size: int, scale: float, rounded: bool) -> Image.Image:
    """The star on the theme's background; ``scale`` shrinks it around the centre."""
    big = size * 4  # drawn large, then downsampled: smooth edges
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    if rounded:
        pen.rounded_rectangle([0, 0, big - 1, big - 1], radius=big * 14 // 64, fill=BACKGROUND)
    else:  # maskable: the launcher cuts its own shape, the background must fill the square
        pen.rectangle([0, 0, big - 1, big - 1], fill=BACKGROUND)
    unit = big / 64
    pen.polygon([((x - 32) * scale * unit + big / 2, (y - 31.5) * scale * unit + big / 2)
                 for x, y in POINTS], fill=STAR)
    return image.resize((size, size), Image.LANCZOS)


def main() -> None:
    draw(192, 1.0, True).save(APP / "icon-192.png", optimize=True)
    draw(512, 1.0, True).save(APP / "icon-512.png", optimize=True)
    draw(512, 0.72, False).save(APP / "icon-maskable-512.png", optimize=True)
    draw(180, 0.9, False).convert("RGB").save(APP / "apple-touch-icon.png", optimize=True)


if __name__ == "__main__":
    main()
