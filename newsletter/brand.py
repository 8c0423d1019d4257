"""The publication's look, from `[publication]`: the logo as mail and pages show it, and the
accent colour in shades that stay readable (WCAG 2.1 AA, 4.5:1) on light and dark paper.

An editor picks one accent; a bright yellow or a pale teal would fail as link text on white,
so the colour used for text is the accent darkened (or, on dark paper, lightened) just as far
as contrast needs, while rules and bars keep the accent itself.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.config import Settings
from newsletter.feeds.images import image_size

# The palette the templates are drawn on (light, then dark).
PAPER = "#ffffff"
PAPER_DARK = "#16191d"
INK = "#1a1d21"
INK_DARK = "#e8eaed"
READABLE = 4.5  # WCAG 2.1 AA for body text
# The largest a logo is shown in the masthead, in CSS pixels (a 2x file stays sharp).
LOGO_MAX_WIDTH = 240
LOGO_MAX_HEIGHT = 56
LOGO_LEGIBLE_HEIGHT = 24  # a wordmark shown lower than this is hard to read
BRAND_PATH = "/brand"  # where `serve` publishes logo files


@dataclass(frozen=True)
class Logo:
    url: str
    width: int  # as shown, in CSS pixels
    height: int
    file: Path | None = None  # a file beside config.toml that `serve` publishes

    @property
    def page_url(self) -> str:
        """How the web pages link it: a published file by its path, so pages work on any
        host `serve` answers on (a test's 127.0.0.1 as well as base_url)."""
        if self.file is None:
            return self.url
        parts = urlsplit(self.url)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path


@dataclass(frozen=True)
class Brand:
    accent: str  # the editor's colour: bars, rules, bullets
    link: str  # text and links on light paper
    link_dark: str  # text and links on dark paper
    tint: str  # a highlight's background on light paper
    tint_dark: str
    on_accent: str  # text on a button of `link`
    logo: Logo | None
    logo_dark: Logo | None
    problems: tuple[str, ...] = ()  # what `newsletter check` reports: a logo file missing...

    @property
    def files(self) -> dict[str, Path]:
        """The logo files `serve` publishes, by their name under /brand/."""
        return {
            Path(urlsplit(logo.url).path).name: logo.file
            for logo in (self.logo, self.logo_dark)
            if logo is not None and logo.file is not None
        }


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(max(0, min(255, part))):02x}" for part in rgb)


def luminance(color: str) -> float:
    def linear(part: int) -> float:
        channel = part / 255
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(part) for part in _rgb(color))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two colours, 1 to 21."""
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def mix(color: str, other: str, amount: float) -> str:
    """`color` moved `amount` (0 to 1) of the way to `other`."""
    start, end = _rgb(color), _rgb(other)
    return _hex(tuple(a + (b - a) * amount for a, b in zip(start, end, strict=True)))  # type: ignore[arg-type]


def readable(color: str, background: str, minimum: float = READABLE) -> str:
    """`color`, moved toward black on a light background or white on a dark one only as far as
    it must be to reach `minimum` contrast against `background`."""
    target = "#000000" if luminance(background) > 0.18 else "#ffffff"
    for step in range(21):
        candidate = mix(color, target, step / 20)
        if contrast(candidate, background) >= minimum:
            return candidate
    return target


def brand_of(settings: Settings) -> Brand:
    publication = settings.publication
    logo_files = tuple(
        _file_stamp(settings.folder / name)
        for name in (publication.logo, publication.logo_dark)
        if name and urlsplit(name).scheme not in ("http", "https")
    )
    return _brand(settings, logo_files)


def _file_stamp(path: Path) -> tuple[Path, float]:
    """A logo file with its modification time: a replaced logo is read again."""
    path = path.resolve()
    try:
        return path, path.stat().st_mtime
    except OSError:
        return path, 0.0


@functools.lru_cache(maxsize=16)
def _brand(settings: Settings, _stamps: tuple[tuple[Path, float], ...]) -> Brand:
    publication = settings.publication
    accent = publication.accent_color.lower()
    link = readable(accent, PAPER)
    problems: list[str] = []
    logos = []
    for key, name in (("logo", publication.logo), ("logo_dark", publication.logo_dark)):
        logo, problem = _logo(settings, key, name)
        logos.append(logo)
        if problem:
            problems.append(problem)
    return Brand(
        accent=accent,
        link=link,
        link_dark=readable(accent, PAPER_DARK),
        tint=mix(accent, PAPER, 0.9),
        tint_dark=mix(accent, PAPER_DARK, 0.8),
        on_accent="#ffffff" if contrast("#ffffff", link) >= READABLE else INK,
        logo=logos[0],
        logo_dark=logos[1] if logos[0] is not None else None,
        problems=tuple(problems),
    )


def _logo(settings: Settings, key: str, name: str) -> tuple[Logo | None, str]:
    """The logo as shown, and what is wrong with it ("" when nothing)."""
    publication = settings.publication
    if not name:
        return None, ""
    where = f"{settings.path}: [publication] {key}"
    instead = "the masthead keeps the light logo" if key == "logo_dark" else "it shows the name"
    scheme = urlsplit(name).scheme
    if scheme in ("http", "https"):
        assert publication.logo_width is not None
        assert publication.logo_height is not None
        logo = Logo(name, *_fitted(publication.logo_width, publication.logo_height))
        if scheme == "http":
            return logo, f"{where}: {name} is plain http, which mail clients warn of or block"
        return logo, _too_thin(where, logo)
    path = (settings.folder / name).resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"{where}: cannot read {path}: {exc.strerror}; {instead}"
    size = image_size(data[: 256 * 1024])
    if size is None:
        return None, f"{where}: {path} is not a PNG, JPEG, GIF or WebP image; {instead}"
    natural_width, natural_height = size
    if publication.logo_width and publication.logo_height:
        natural_width, natural_height = publication.logo_width, publication.logo_height
    version = hashlib.sha256(data).hexdigest()[:10]  # a new file gets a new URL past caches
    stem = "logo-dark" if key == "logo_dark" else "logo"
    url = f"{publication.base_url}{BRAND_PATH}/{stem}{path.suffix.lower()}?v={version}"
    logo = Logo(url, *_fitted(natural_width, natural_height), path)
    return logo, _too_thin(where, logo)


def _too_thin(where: str, logo: Logo) -> str:
    if logo.height >= LOGO_LEGIBLE_HEIGHT:
        return ""
    widest = LOGO_MAX_WIDTH // LOGO_LEGIBLE_HEIGHT
    return (
        f"{where}: shown at {logo.width}x{logo.height} px, too thin to read; the masthead "
        f"holds {LOGO_MAX_WIDTH}x{LOGO_MAX_HEIGHT} px: use a logo at most {widest} times as "
        "wide as it is high"
    )


def _fitted(width: int, height: int) -> tuple[int, int]:
    """A logo's size in the masthead: within LOGO_MAX_*, its proportions kept; a file twice
    the size shows at half (retina)."""
    scale = min(1.0, LOGO_MAX_WIDTH / width, LOGO_MAX_HEIGHT / height)
    return max(1, round(width * scale)), max(1, round(height * scale))
