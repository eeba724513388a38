"""Recognise output values (text, local media files, URLs, JSON) and render them as safe HTML.

Every fragment produced here is safe to drop into a page: model and user text is HTML-escaped,
local files are embedded as base64 ``data:`` URIs (so the HTML keeps working after the file store
or Replicate's copy is gone and when the page is moved), and URLs are shown as links, never fetched.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from replibatch._store.outputs import OutputKind, output_kind
from replibatch._table.filetypes import TYPE_BY_SUFFIX, sniff
from replibatch._view.theme import PALETTE_CSS

__all__ = ["CSS", "MediaRenderer", "is_missing", "is_url", "local_path", "media_type"]

# Formats Pillow can shrink; SVG and animations are embedded as they are.
_RESIZABLE = {"image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif"}
_SMALL_IMAGE_BYTES = 200_000

CSS = PALETTE_CSS + """
.rb-root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px;
  line-height: 1.4; }
.rb-root table.rb-table { border-collapse: separate; border-spacing: 0; table-layout: auto;
  color: inherit; background: var(--rb-bg); }
.rb-root .rb-table th, .rb-root .rb-table td { border: 0 solid var(--rb-border);
  border-width: 0 1px 1px 0; padding: 6px 8px; vertical-align: top; text-align: left;
  color: inherit; background: var(--rb-bg); }
.rb-root .rb-table tr > :first-child { border-left-width: 1px; }
.rb-root .rb-table tr:first-child > * { border-top-width: 1px; }
.rb-root .rb-table thead th { background: var(--rb-head-bg); overflow-wrap: break-word;
  max-width: 420px; font-weight: 600; }
.rb-root .rb-table tbody th { background: var(--rb-index-bg); font-weight: 500; min-width: 140px;
  max-width: 260px; }
.rb-root .rb-table td { min-width: 180px; max-width: 420px; }
.rb-root .rb-table tfoot th, .rb-root .rb-table tfoot td { background: var(--rb-head-bg);
  font-size: 12px; font-weight: 400; }
.rb-root .rb-item + .rb-item { border-top: 1px dashed var(--rb-border); margin-top: 6px; padding-top: 6px; }
.rb-root .rb-text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; color: inherit;
  background: transparent; font-family: inherit; line-height: 1.4; }
.rb-root pre.rb-text { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.rb-root details.rb-more > summary { cursor: pointer; color: var(--rb-link); font-size: 12px; }
.rb-root img.rb-media { max-width: 100%; height: auto; display: block; border-radius: 3px; }
.rb-root video.rb-media { max-width: 100%; display: block; }
.rb-root audio.rb-media { width: 100%; min-width: 160px; }
.rb-root .rb-gallery { display: flex; flex-wrap: wrap; gap: 4px; align-items: flex-start; }
.rb-root .rb-gallery > * { flex: 0 1 auto; min-width: 0; max-width: 100%; }
.rb-root .rb-grid { display: grid; grid-template-columns: repeat(2, max-content); gap: 4px;
  justify-items: start; align-items: start; }
.rb-root .rb-grid.rb-grid-3 { grid-template-columns: repeat(3, max-content); }
.rb-root .rb-grid img.rb-media { max-width: 100%; max-height: 128px; width: auto; cursor: zoom-in; }
.rb-root .rb-grid img.rb-media:focus { position: fixed; inset: 0; margin: auto; width: auto;
  height: auto; max-width: 92vw; max-height: 92vh; object-fit: contain;
  z-index: 1000; cursor: zoom-out; outline: 4px solid var(--rb-border);
  box-shadow: 0 0 0 100vmax rgba(0, 0, 0, 0.6); background: var(--rb-bg); }
.rb-root .rb-badges { margin-top: 4px; display: flex; flex-wrap: wrap; gap: 3px; }
.rb-root .rb-badge { font-size: 11px; padding: 1px 6px; border-radius: 9px; color: inherit;
  background: var(--rb-badge-bg); white-space: nowrap; }
.rb-root .rb-badge.rb-bad { background: var(--rb-bad-bg); }
.rb-root .rb-badge.rb-cached { background: var(--rb-cached-bg); }
.rb-root .rb-badge.rb-param { background: var(--rb-warn-bg); }
.rb-root .rb-badge.rb-same { background: var(--rb-same-bg); }
.rb-root .rb-output > .rb-text { max-width: 100ch; }
.rb-root .rb-output img.rb-media { max-height: 75vh; width: auto; }
.rb-root .rb-error { color: var(--rb-danger); font-size: 12px; overflow-wrap: anywhere; }
.rb-root .rb-none, .rb-root .rb-missing { color: var(--rb-muted); font-style: italic; }
.rb-root .rb-muted { color: var(--rb-muted); }
.rb-root a { color: var(--rb-link); overflow-wrap: anywhere; }
.rb-root .rb-scroll-box { overflow: auto; max-width: 100%; border-radius: 4px; }
.rb-root .rb-scroll-box thead th { position: sticky; top: 0; z-index: 2; }
.rb-root .rb-scroll-box tbody th:first-child { position: sticky; left: 0; z-index: 1; }
.rb-root .rb-scroll-box thead th:first-child { left: 0; z-index: 3; }
.rb-root .rb-scroll-box tfoot th, .rb-root .rb-scroll-box tfoot td {
  position: sticky; bottom: 0; z-index: 2; }
.rb-root .rb-scroll-box tfoot th:first-child { left: 0; z-index: 3; }
.rb-root .rb-caption { color: var(--rb-muted); font-size: 12px; margin: 0 0 4px; }
"""


def is_missing(value: Any) -> bool:
    """True for None, NaN, pd.NA and NaT (and False for lists, which pd.isna would split up)."""
    return output_kind(value) is OutputKind.MISSING


def is_url(value: Any) -> bool:
    """True for exactly one http(s) URL (shown as a link, never fetched)."""
    return output_kind(value) is OutputKind.URL


def local_path(value: Any) -> Path | None:
    """The existing local file `value` names, or None.

    Only files of our store are embedded: an `OutputFile` (what a run's file outputs are). A
    plain string or Path is not: a model's text output, or a prompt, can be
    "/home/me/.ssh/id_rsa". Missing files give None.
    """
    return value.path if output_kind(value) is OutputKind.STORED_FILE else None


def _looks_like_media_path(value: Any) -> bool:
    """A path string with a media suffix whose file is not ours or gone (shown as "missing file"
    instead of as text)."""
    if not isinstance(value, str) or output_kind(value) not in (
        OutputKind.MISSING_FILE,
        OutputKind.LOCAL_PATH,
    ):
        return False
    return Path(str(getattr(value, "path", value))).suffix.lower() in TYPE_BY_SUFFIX


def media_type(path: Path) -> str | None:
    """The MIME type of a local file, from its suffix or else its first bytes; None if unknown."""
    mime = TYPE_BY_SUFFIX.get(path.suffix.lower())
    if mime:
        return mime
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    sniffed = sniff(head)
    return sniffed[0] if sniffed else None


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"  # pragma: no cover


class MediaRenderer:
    """Turns output values into HTML fragments, caching encoded files by path.

    `max_text`: characters shown before the rest folds into a ``<details>`` (None: no folding).
    `max_px`: longest side of embedded images; bigger or heavy images are re-encoded with Pillow
    (None: embed the original bytes, i.e. full size). `max_embed_bytes`: files larger than this
    are not embedded; their name and size are shown instead. `grid`: several files in one value
    show as a grid of square thumbnails, each enlarged on click, instead of side by side.
    """

    def __init__(
        self,
        *,
        max_text: int | None = 600,
        max_px: int | None = 384,
        max_embed_bytes: int = 25_000_000,
        grid: bool = False,
    ) -> None:
        self.grid = grid
        self.max_text = max_text
        self.max_px = max_px
        self.max_embed_bytes = max_embed_bytes
        self._uris: dict[tuple[str, int, int], tuple[str, str] | None] = {}

    def render(self, value: Any) -> str:
        """HTML for one output value: media inline, URLs as links, text escaped, JSON pretty."""
        if is_missing(value):
            return '<span class="rb-none">no output</span>'
        path = local_path(value)
        if path is not None:
            return self.render_file(path)
        if isinstance(value, str):
            if is_url(value):
                return self.render_link(value)
            if _looks_like_media_path(value):
                return f'<span class="rb-missing">missing file: {_escape(str(value))}</span>'
            return self.render_text(value)
        if isinstance(value, (list, tuple)) and value and all(
            local_path(item) is not None or is_url(item) or _looks_like_media_path(item)
            for item in value
        ):
            if self.grid and len(value) > 1:
                # Thumbnails in a grid; each takes focus on click and then shows enlarged (CSS only,
                # no script: notebook front ends and mail readers drop scripts).
                items = "".join(self.render(v).replace("<img ", '<img tabindex="0" ', 1) for v in value)
                # Two thumbnails a row up to four (a 2×2 block), then three: the grid claims its
                # width from the thumbnails, so a table cell cannot squeeze it into one column.
                wide = " rb-grid-3" if len(value) > 4 else ""
                return f'<div class="rb-grid{wide}">{items}</div>'
            return '<div class="rb-gallery">' + "".join(self.render(v) for v in value) + "</div>"
        if isinstance(value, (bytes, bytearray)):
            return f'<span class="rb-none">{len(value)} bytes</span>'
        return self.render_text(_to_json(value), monospace=True)

    def render_text(self, text: str, *, monospace: bool = False) -> str:
        """Escaped, wrapped text; past `max_text` characters the rest folds into ``<details>``."""
        tag = "pre" if monospace else "div"
        if self.max_text is None or len(text) <= self.max_text:
            return f'<{tag} class="rb-text">{_escape(text)}</{tag}>'
        cut = self.max_text
        # Fold at a space near the limit rather than mid-word, when there is one.
        space = text.rfind(" ", int(cut * 0.8), cut)
        if space > 0:
            cut = space
        head, tail = text[:cut], text[cut:]
        return (
            f'<{tag} class="rb-text">{_escape(head)}<details class="rb-more">'
            f"<summary>show {len(tail):,} more characters</summary>{_escape(tail)}</details></{tag}>"
        )

    @staticmethod
    def render_link(url: str) -> str:
        """An escaped link that opens in a new tab without handing over the opener."""
        escaped = _escape(url.strip())
        return (
            f'<a href="{escaped}" target="_blank" rel="noopener noreferrer nofollow">{escaped}</a>'
        )

    def render_file(self, path: Path) -> str:
        """A local file inline as ``<img>``/``<audio>``/``<video>`` with a data URI."""
        mime = media_type(path)
        name = _escape(path.name)
        if mime is None:
            return f'<span class="rb-none">file {name}</span>'
        encoded = self.data_uri(path, mime)
        if encoded is None:
            size = _human_size(path.stat().st_size)
            return f'<span class="rb-none">{name} ({size}, too large to embed)</span>'
        uri, _ = encoded
        kind = mime.split("/", 1)[0]
        if kind == "image":
            return f'<img class="rb-media" src="{uri}" alt="{name}" title="{name}">'
        if kind == "audio":
            return f'<audio class="rb-media" controls preload="metadata" src="{uri}"></audio>'
        return f'<video class="rb-media" controls muted preload="metadata" src="{uri}"></video>'

    def data_uri(self, path: Path, mime: str) -> tuple[str, str] | None:
        """``(data URI, MIME type)`` of the file, shrunk when it is a big image; None if too big."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._uris:
            self._uris[key] = self._encode(path, mime, stat.st_size)
        return self._uris[key]

    def _encode(self, path: Path, mime: str, size: int) -> tuple[str, str] | None:
        data: bytes | None = None
        if mime in _RESIZABLE and self.max_px is not None:
            shrunk = _shrink_image(path, self.max_px, force=size > _SMALL_IMAGE_BYTES)
            if shrunk is not None:
                data, mime = shrunk
        if data is None:
            if size > self.max_embed_bytes:
                return None
            data = path.read_bytes()
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", mime


def _shrink_image(path: Path, max_px: int, *, force: bool) -> tuple[bytes, str] | None:
    """Re-encode an image to fit `max_px` (JPEG, or PNG when it has transparency).

    Returns None when the original is fine as it is (small enough, animated, or unreadable).
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a dependency
        raise ImportError("embedding images needs Pillow: pip install pillow") from exc
    try:
        with Image.open(path) as image:
            if getattr(image, "is_animated", False):
                return None
            if max(image.size) <= max_px and not force:
                return None
            image.load()
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            )
            small = image.convert("RGBA" if has_alpha else "RGB")
            small.thumbnail((max_px, max_px))
            buffer = io.BytesIO()
            if has_alpha:
                small.save(buffer, format="PNG", optimize=True)
                return buffer.getvalue(), "image/png"
            small.save(buffer, format="JPEG", quality=85, optimize=True)
            return buffer.getvalue(), "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)
