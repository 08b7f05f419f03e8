"""``siftc.render_html(gm or dump_dir, path)``: the pass-by-pass HTML viewer of a compile."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from siftc.core import atomic
from siftc.core.errors import SiftcError
from siftc.handle import handle_of
from siftc.viewer.page import render_page

VIEWER_JSON = "viewer.json"    # written into every dump dir by siftc.dumps.DumpWriter


def viewer_data(handle) -> dict:
    """What the page shows, from a compiled GraphModule's handle (JSON-ready)."""
    return {"model": handle.model_name, "policy": str(handle.policy), "target": handle.target,
            "pipeline": handle.pipeline, "passes": handle.passes, "report": handle.report(refresh=False).to_dict()}


def _load(source) -> dict:
    if isinstance(source, torch.fx.GraphModule):
        h = handle_of(source)
        if h is None:
            raise SiftcError("render_html expects a GraphModule returned by siftc.compile (it has no .siftc "
                             "handle) or a dump directory written with dump_dir=")
        if not h.passes:
            raise SiftcError("this GraphModule has no pass records (it was built by an older siftc); "
                             "compile it again")
        return viewer_data(h)
    p = Path(source)
    f = p / VIEWER_JSON if p.is_dir() else p
    if not f.exists():
        raise SiftcError(f"render_html: {f} not found; pass a compiled GraphModule or a directory written "
                         f"by siftc.compile(..., dump_dir=...) / siftc compile --dump-dir")
    return json.loads(f.read_text())


def render_html(source, path, use_dot=None) -> Path:
    """Write the viewer page of ``source`` (a compiled GraphModule or a dump directory) to ``path``.

    ``use_dot``: None draws with graphviz ``dot`` when installed, False forces the plain layout.
    The file is written atomically (a temp file renamed into place)."""
    text = render_page(_load(source), use_dot)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise SiftcError(f"render_html: folder {path.parent} does not exist")
    return atomic.write_text(path, text)
