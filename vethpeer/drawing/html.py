"""The graph as ONE self-contained HTML page: Graphviz's SVG inline, the table of rows beside
it, a search box and hover details. No network access: no external script, style, font or
image; a Content-Security-Policy allows only this page's own inline script (by hash) and style.

Injection: the SVG's text is XML-escaped by Graphviz (and its IDs are vethpeer's own);
the table is escaped here with :func:`html.escape`; the hover details travel as JSON
inside ``<script type="application/json">`` with ``<``, ``>``, ``&`` and U+2028/9 as
``\\uXXXX``, and the script only ever sets ``textContent``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from html import escape

from ..model import End, Row
from .build import cluster_id, node_id
from .elements import Graph
from .text import cluster_details, node_details, visible

STYLE = """
body{font:13px Helvetica,Arial,sans-serif;margin:0;color:#1a202c}
header{padding:8px 12px;background:#edf2f7;display:flex;gap:12px;align-items:center}
header h1{font-size:16px;margin:0}
#search{font-size:14px;padding:4px 8px;width:24em}
main{display:flex;gap:12px;padding:8px;align-items:flex-start}
#picture{flex:3;overflow:auto;border:1px solid #cbd5e0;max-height:88vh}
#picture svg{max-width:100%;height:auto}
aside{flex:2;min-width:22em;max-height:88vh;overflow:auto}
#details{white-space:pre-wrap;background:#f7fafc;border:1px solid #cbd5e0;padding:6px;min-height:4em;
font-family:monospace;font-size:12px}
table{border-collapse:collapse;width:100%;margin-top:8px}
th,td{border-bottom:1px solid #e2e8f0;padding:2px 4px;text-align:left;font-size:12px;vertical-align:top}
tr.hidden{display:none}
g.node.hit polygon,g.node.hit path,g.node.hit ellipse{stroke:#d53f8c;stroke-width:4px}
svg.searching g.node:not(.hit),svg.searching g.cluster:not(.hit){opacity:.35}
g.cluster.hit>polygon,g.cluster.hit>path{stroke:#d53f8c;stroke-width:3px}
"""

SCRIPT = """
(function(){
var data=JSON.parse(document.getElementById('vethpeer-data').textContent);
var svg=document.querySelector('#picture svg');
var details=document.getElementById('details');
var count=document.getElementById('count');
var rows=Array.prototype.slice.call(document.querySelectorAll('#rows tbody tr'));
var groups=svg?Array.prototype.slice.call(svg.querySelectorAll('g.node,g.cluster')):[];
function info(id){return data.nodes[id]||data.clusters[id]||null;}
function show(id){var lines=info(id);if(lines){details.textContent=lines.join('\\n');}}
groups.forEach(function(g){g.addEventListener('mouseenter',function(){show(g.id);});});
rows.forEach(function(tr){tr.addEventListener('mouseenter',function(){show(tr.getAttribute('data-node'));});});
function search(){
  var q=document.getElementById('search').value.trim().toLowerCase();
  var hits={},shown=0,boxes=0;
  rows.forEach(function(tr){
    var ok=!q||tr.getAttribute('data-search').indexOf(q)>=0;
    tr.classList.toggle('hidden',!ok);
    if(ok){shown++;if(q){(tr.getAttribute('data-nodes')||'').split(' ').forEach(function(n){hits[n]=1;});}}
  });
  groups.forEach(function(g){
    var lines=info(g.id);
    var ok=!!q&&(hits[g.id]===1||(lines&&lines.join('\\n').toLowerCase().indexOf(q)>=0));
    g.classList.toggle('hit',ok);if(ok){boxes++;}
  });
  if(svg){svg.classList.toggle('searching',!!q);}
  count.textContent=q?(shown+' rows, '+boxes+' boxes match'):(rows.length+' rows');
}
document.getElementById('search').addEventListener('input',search);
search();
})();
"""

_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)


def inline_svg(svg: str) -> str:
    """Graphviz's SVG document without its XML declaration, DOCTYPE and leading comments."""
    return _PROLOG.sub("", svg, count=1).strip()


def script_json(document: object) -> str:
    """JSON that cannot end the ``<script>`` element it is in, nor open a comment."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    for char, code in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, code)
    return text


def _end_text(end: End | None) -> str:
    if end is None:
        return ""
    return f"{end.workload.label} \u00b7 {end.link.name}"


def _row_html(row: Row) -> str:
    here = node_id(row.end.ns.key, row.end.link.index)
    ids = [here, cluster_id(row.end.ns.key)]
    peer = row.peer
    if peer is not None:
        ids += [node_id(peer.ns.key, peer.link.index), cluster_id(peer.ns.key)]
    bridge = (peer.master if peer is not None else None) or row.end.master or ""
    relation = row.relation.value if row.relation is not None else ""
    cells = [
        row.end.workload.label,
        row.end.link.name,
        row.end.link.operstate,
        " ".join(row.end.link.addresses),
        f"{relation}: {_end_text(peer)}" if peer is not None else (row.unresolved or ""),
        bridge,
    ]
    cells = [visible(c) for c in cells]
    search = " ".join([*cells, *row.end.workload.containers, row.end.workload.id or ""]).lower()
    tds = "".join(f"<td>{escape(c)}</td>" for c in cells)
    return (
        f'<tr data-node="{escape(here)}" data-nodes="{escape(" ".join(ids))}" '
        f'data-search="{escape(visible(search))}">{tds}</tr>'
    )


def render(graph: Graph, svg: str, rows: Sequence[Row], title: str = "vethpeer graph") -> str:
    clusters = {c.id: c for c in graph.clusters}
    data = {
        "nodes": {n.id: node_details(n, clusters.get(n.cluster or "")) for n in graph.nodes},
        "clusters": {c.id: cluster_details(c) for c in graph.clusters},
    }
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{digest}'"
    notes = " \u00b7 ".join(visible(n) for n in graph.notes)
    head = ["Workload", "Interface", "State", "Addresses", "Peer", "Bridge"]
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
            f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">\n',
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n",
            f"<header><h1>{escape(title)}</h1>",
            '<input id="search" type="search" placeholder="search workloads, interfaces, bridges, addresses"'
            ' aria-label="search">',
            f'<span id="count"></span><span>{escape(notes)}</span></header>\n',
            f'<main><section id="picture">\n{inline_svg(svg)}\n</section>\n',
            '<aside><div id="details">Hover over a box or a row for its details.</div>\n',
            '<table id="rows"><thead><tr>',
            "".join(f"<th>{h}</th>" for h in head),
            "</tr></thead><tbody>\n",
            "\n".join(_row_html(row) for row in rows),
            "\n</tbody></table></aside></main>\n",
            f'<script type="application/json" id="vethpeer-data">{script_json(data)}</script>\n',
            f"<script>{SCRIPT}</script>\n</body></html>\n",
        ]
    )
