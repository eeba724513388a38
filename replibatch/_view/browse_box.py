"""The browser's outer widget: a VBox that says it needs a live kernel wherever it cannot render.

Kept apart from `browse.py` because it is about notebook front ends (what they show for a widget
without its kernel), not about browsing.
"""

from __future__ import annotations

import html
from typing import Any

from replibatch._view.media import CSS

__all__ = ["BrowserBox", "widgets"]


def widgets() -> Any:
    """The ipywidgets module; raises ImportError naming the package to install."""
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError("replibatch.browse needs ipywidgets: pip install ipywidgets") from exc
    return ipywidgets



class BrowserBox(widgets().VBox):  # type: ignore[misc]
    """The browser's VBox, shown with a note that it needs a live kernel, visible only where the
    widget itself does not render.

    Front ends pick the widget's view over any fallback in its own bundle (nbconvert too), so the
    note is a separate HTML output placed before the widget, hidden by CSS (``:has``) when the
    same output area holds the rendered widget (class ``rb-browser``). An exported notebook, or a
    saved one opened without its widget state, shows the note; a live notebook shows the widget.
    (A notebook saved *with* widget state still draws the controls; they do nothing.)
    """

    def _note(self) -> str:
        browser = getattr(self, "_replibatch_browser", None)
        rows = len(browser.res) if browser is not None else 0
        return (
            f"replibatch browser over {rows:,} rows: interactive, it needs a live kernel. "
            "Run the cell again to use it (rb.compare(res) gives a static view)."
        )

    def note_html(self) -> str:
        """The stand-alone note (HTML with its own hiding rule)."""
        return (
            "<style>.jp-OutputArea:has(.rb-browser) .rb-needs-kernel, "
            ".output:has(.rb-browser) .rb-needs-kernel { display: none; }</style>"
            f'<style>{CSS}</style><div class="rb-root rb-needs-kernel"><p class="rb-caption">'
            f"{html.escape(self._note())}</p></div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = self._note()
            data["text/html"] = self.note_html()
        return bundle

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import HTML, display

        display(HTML(self.note_html()))
        display(self._repr_mimebundle_(), raw=True)

