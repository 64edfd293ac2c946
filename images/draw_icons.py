"""
Draw presenced's default status icons, one 16x16 PNG per state, and the
default avatar, a 96x96 PNG.

Run from anywhere with Pillow installed:  python images/draw_icons.py
It rewrites the PNG files next to this script.
"""

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 16
SCALE = 8
CANVAS = SIZE * SCALE
WHITE = (255, 255, 255, 255)


def _disc(draw, fill, outline):
    draw.ellipse((8, 8, CANVAS - 9, CANVAS - 9), fill=fill, outline=outline, width=8)


def _available(draw):
    _disc(draw, (46, 170, 60, 255), (24, 110, 36, 255))


def _chat(draw):
    _available(draw)
    for x in (36, 64, 92):
        draw.ellipse((x - 10, 54, x + 10, 74), fill=WHITE)


def _clock(draw):
    draw.line((64, 64, 64, 30), fill=(60, 45, 0, 255), width=12)
    draw.line((64, 64, 90, 76), fill=(60, 45, 0, 255), width=12)


def _away(draw):
    _disc(draw, (250, 200, 40, 255), (170, 125, 0, 255))
    _clock(draw)


def _xa(draw):
    _disc(draw, (235, 120, 30, 255), (160, 70, 0, 255))
    draw.rectangle((42, 36, 56, 92), fill=WHITE)
    draw.rectangle((72, 36, 86, 92), fill=WHITE)


def _dnd(draw):
    _disc(draw, (215, 40, 40, 255), (140, 15, 15, 255))
    draw.rectangle((30, 56, 98, 72), fill=WHITE)


def _offline(draw):
    draw.ellipse((14, 14, CANVAS - 15, CANVAS - 15), fill=(200, 200, 200, 255), outline=(120, 120, 120, 255), width=14)


def _forbidden(draw):
    grey = (70, 70, 70, 255)
    draw.ellipse((12, 12, CANVAS - 13, CANVAS - 13), fill=WHITE, outline=grey, width=18)
    draw.line((36, 36, 92, 92), fill=grey, width=18)


PAINTERS = {
    "available": _available,
    "chat": _chat,
    "away": _away,
    "xa": _xa,
    "dnd": _dnd,
    "offline": _offline,
    "forbidden": _forbidden,
}


AVATAR = 96


def _avatar(draw, canvas):
    draw.rectangle((0, 0, canvas, canvas), fill=(214, 218, 224, 255))
    figure = (150, 158, 170, 255)
    unit = canvas / 96
    draw.ellipse((30 * unit, 16 * unit, 66 * unit, 52 * unit), fill=figure)
    draw.ellipse((12 * unit, 58 * unit, 84 * unit, 130 * unit), fill=figure)


def _draw(paint, size, path, *args):
    canvas = size * SCALE
    image = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    paint(ImageDraw.Draw(image), *args)
    image.resize((size, size), Image.Resampling.LANCZOS).save(path, optimize=True)


def main() -> None:
    here = Path(__file__).resolve().parent
    for name, paint in PAINTERS.items():
        _draw(paint, SIZE, here / f"{name}.png")
    _draw(_avatar, AVATAR, here / "avatar.png", AVATAR * SCALE)


if __name__ == "__main__":
    main()
