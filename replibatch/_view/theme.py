"""Colours of every HTML view, taken from the notebook's theme so they read in light and dark.

Each view's root element (``.rb-root``) defines a small palette of ``--rb-*`` custom properties.
Each one reads JupyterLab's ``--jp-*`` variable first (Lab light, Lab dark and JupyterLab-based
front ends set them), then VS Code's ``--vscode-*`` variable (its notebook renderer sets those),
then a light fallback (classic Notebook, a plain browser). The few colours where a theme variable
would give poor contrast against its own tinted background (error text) are switched explicitly
when the front end says it is dark: JupyterLab sets ``data-jp-theme-light="false"`` on <body>,
VS Code sets ``class="vscode-dark"``. Stand-alone pages (exported comparisons, reports) follow
the reader's ``prefers-color-scheme`` through `PAGE_CSS`, by giving the same ``--jp-*`` variables
dark values, so one palette serves every case.
"""

from __future__ import annotations

__all__ = ["PAGE_CSS", "PALETTE_CSS"]

# Light fallbacks are GitHub's light palette (contrast >= 4.5:1 for text on every background).
PALETTE_CSS = """
.rb-root {
  --rb-fg: var(--jp-content-font-color1, var(--vscode-editor-foreground, #1f2328));
  --rb-muted: var(--jp-content-font-color2, var(--vscode-descriptionForeground, #57606a));
  --rb-bg: var(--jp-layout-color0, var(--vscode-editor-background, #ffffff));
  --rb-head-bg: var(--jp-layout-color2, var(--vscode-editorWidget-background, #eef1f4));
  --rb-index-bg: var(--jp-layout-color1, var(--vscode-editor-background, #f8f9fb));
  --rb-border: var(--jp-border-color2, var(--vscode-editorWidget-border, #d0d7de));
  --rb-link: var(--jp-content-link-color, var(--vscode-textLink-foreground, #0969da));
  --rb-badge-bg: rgba(127, 127, 127, 0.16);
  --rb-bad-bg: rgba(207, 34, 46, 0.16);
  --rb-warn-bg: rgba(212, 167, 44, 0.22);
  --rb-cached-bg: rgba(9, 105, 218, 0.16);
  --rb-same-bg: rgba(130, 80, 223, 0.18);
  --rb-danger: #a40e26;
  color: var(--rb-fg);
}
body[data-jp-theme-light="false"] .rb-root, body.vscode-dark .rb-root,
body.vscode-high-contrast .rb-root, .rb-root.rb-dark {
  --rb-danger: #ffa198;
  --rb-badge-bg: rgba(200, 200, 200, 0.16);
}
"""

# Only for pages replibatch writes itself: there the reader's OS preference is the theme.
PAGE_CSS = """
:root { color-scheme: light dark; }
body { background: var(--jp-layout-color0, #ffffff); color: var(--jp-content-font-color1, #1f2328); }
@media (prefers-color-scheme: dark) {
  :root {
    --jp-content-font-color1: #e6edf3;
    --jp-content-font-color2: #9198a1;
    --jp-layout-color0: #0d1117;
    --jp-layout-color1: #151b23;
    --jp-layout-color2: #212830;
    --jp-border-color2: #3d444d;
    --jp-content-link-color: #4493f8;
  }
  /* "html .rb-root" outranks the plain ".rb-root" palette that each embedded view (a comparison
     inside a report) declares again later in the page. */
  html .rb-root { --rb-danger: #ffa198; --rb-badge-bg: rgba(200, 200, 200, 0.16); }
}
"""
