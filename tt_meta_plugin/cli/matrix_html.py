"""The decision matrix as one self-contained HTML page (`tt-meta explain --matrix --html`).

Rendered from the documented JSON (matrix.to_json), so the page and `--json` cannot differ.
No network: inline CSS only, no fonts, scripts or images. Every value is escaped: model names
come from files. A refusal is marked by a symbol, the word and a hatch, never by colour
alone; each cell's reason is its `title` (shown on hover).
"""

from __future__ import annotations

from html import escape
from typing import Any

# Colour per backend, in the order of allowed_backends (then any other backend): dark text on
# a light fill, and a darker border so neighbouring cells stay apart in greyscale.
_PALETTE = (("#dbe9ff", "#1f5fbf"), ("#ffe3c7", "#b35900"), ("#dff5df", "#2e7d32"),
            ("#f0e0ff", "#6a3fa0"), ("#e6e6e6", "#555555"))

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
 color:#1b1b1b;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}
h2{font-size:1.15em;margin:1.6em 0 .5em}
header p{margin:.15em 0;color:#444}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.legend{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0;align-items:center}
.swatch{display:inline-block;padding:4px 10px;border:2px solid;border-radius:4px}
table.matrix{border-collapse:separate;border-spacing:3px}
.matrix th{text-align:left;font-weight:600;padding:4px 10px;white-space:nowrap}
.matrix thead th{background:#f3f3f3;border-radius:4px}
.matrix tbody th{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
 font-weight:500;background:#fafafa}
.cell{padding:4px 8px;border:2px solid;border-radius:4px;min-width:6.5em;white-space:nowrap;
 cursor:help}
.cell small{display:block;font-size:.78em;opacity:.85;font-weight:400}
.refused{background:repeating-linear-gradient(45deg,#fde8e8 0 6px,#fff 6px 12px);
 border:1px dashed #b00020;color:#8a0018;font-weight:600}
.refused a{color:inherit}
.refusals li,.rules li{margin:.35em 0}
.refusals .fix{color:#333}
"""


def render_html(matrix: dict[str, Any]) -> str:
    backends = list(dict.fromkeys(
        [*matrix["policy"]["allowed_backends"],
         *(c["backend"] for c in matrix["cells"] if c["backend"] is not None)]))
    colour = {b: _PALETTE[min(i, len(_PALETTE) - 1)] for i, b in enumerate(backends)}
    notes: dict[tuple[str | None, ...], int] = {}
    for cell in matrix["cells"]:
        refusal = cell["refusal"]
        if refusal is not None:
            notes.setdefault(_note_key(refusal), len(notes) + 1)
    policy = matrix["policy"]
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>tt-meta decision matrix</title>", f"<style>{_CSS}</style></head><body>",
           "<header><h1>tt-meta decision matrix</h1>",
           f"<p>Policy <code>{escape(policy['path'])}</code> (sha256 "
           f"<code>{escape(policy['sha256'][:16])}</code>)</p>",
           f'<p>Generated <time datetime="{escape(matrix["generated"])}">'
           f"{escape(matrix['generated'])}</time></p>"]
    override = matrix["backend_override"]
    if override is not None:
        out.append(f"<p><strong>{escape(override['value'])}</strong> is chosen by "
                   f"{escape(override['source'])} for every model the policy does not deny.</p>")
    out.append("</header>")
    out.append('<section class="legend" aria-label="legend">')
    counts = matrix["counts"]
    for backend in backends:
        fill, line = colour[backend]
        out.append(f'<span class="swatch" style="background:{fill};border-color:{line}">'
                   f"{escape(backend)} ({counts.get(backend, 0)})</span>")
    out.append(f'<span class="swatch refused">&#x2715; REFUSED ({counts.get("refused", 0)})'
               "</span><span>Hover a cell for its reason.</span></section>")
    out.append('<table class="matrix"><thead><tr><th scope="col">model</th>')
    out += [f'<th scope="col">{escape(d) if d is not None else "(not set)"}</th>'
            for d in matrix["devices"]]
    out.append("</tr></thead><tbody>")
    cells = {(c["model"], c["device"]): c for c in matrix["cells"]}
    for model in matrix["models"]:
        out.append(f'<tr><th scope="row">{escape(model)}</th>')
        out += [_cell(cells[(model, d)], colour, notes) for d in matrix["devices"]]
        out.append("</tr>")
    out.append("</tbody></table>")
    used = {c["rule"] for c in matrix["cells"] if c["rule"] is not None}
    rules = [r for r in matrix["rules"] if r["number"] in used]
    if rules:
        out.append('<h2>Rules that chose a backend</h2><ul class="rules">')
        out += [f"<li><code>{escape(r['describe'])}</code> &rarr; {escape(r['backend'])}</li>"
                for r in rules]
        out.append("</ul>")
    if notes:
        out.append('<h2>Refusals</h2><ol class="refusals">')
        for (summary, where, fix), number in notes.items():
            out.append(f'<li id="refusal-{number}">{escape(summary or "")}')
            if where:
                out.append(f"<br><span>where: <code>{escape(where)}</code></span>")
            if fix:
                out.append(f'<br><span class="fix">fix: {escape(fix)}</span>')
            out.append("</li>")
        out.append("</ol>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _note_key(refusal: dict[str, str | None]) -> tuple[str | None, ...]:
    return refusal["summary"], refusal["where"], refusal["fix"]


def _cell(cell: dict[str, Any], colour: dict[str, tuple[str, str]],
          notes: dict[tuple[str | None, ...], int]) -> str:
    data = (f'data-model="{escape(cell["model"])}" '
            f'data-device="{escape(cell["device"] or "")}"')
    refusal = cell["refusal"]
    if refusal is not None:
        number = notes[_note_key(refusal)]
        reason = f"REFUSED: {refusal['summary']}" + (
            f"\nfix: {refusal['fix']}" if refusal["fix"] else "")
        return (f'<td class="cell refused" {data} data-outcome="refused" data-backend="" '
                f'data-reason="{escape(refusal["summary"])}" title="{escape(reason)}">'
                f'&#x2715; REFUSED<small><a href="#refusal-{number}">see [{number}]</a>'
                "</small></td>")
    fill, line = colour[cell["backend"]]
    chosen = {"rule": f"rule {cell['rule']}", "default_backend": "default_backend",
              "model_metadata": "model metadata"}.get(cell["chosen_by"], cell["chosen_by"])
    rule = f' data-rule="{cell["rule"]}"' if cell["rule"] is not None else ""
    return (f'<td class="cell" style="background:{fill};border-color:{line}" {data} '
            f'data-outcome="backend" data-backend="{escape(cell["backend"])}"{rule} '
            f'data-reason="{escape(cell["reason"])}" '
            f'title="{escape(cell["backend"] + " by " + cell["reason"])}">'
            f"{escape(cell['backend'])}<small>{escape(chosen)}</small></td>")
