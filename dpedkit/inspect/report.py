"""The ``dpedkit inspect`` HTML report: one self-contained file that opens offline in any browser.

:func:`write_report` takes a dataset folder (written by ``dpedkit build``) or a pair folder (written by
``dpedkit align``): :mod:`dpedkit.inspect.views` computes what the page shows (re-aligning the worst pairs where
needed) and :mod:`dpedkit.inspect.html` renders it, with every image embedded as a ``data:`` URI (no CDN, no
sibling files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dpedkit.align import is_pair_dir
from dpedkit.config import ReportConfig
from dpedkit.dataset.format import DatasetDir
from dpedkit.errors import InputError
from dpedkit.inspect import html, views
from dpedkit.inspect.views import Progress
from dpedkit.io import write_text

log = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """What :func:`write_report` wrote.

    Attributes:
        path: the HTML file.
        kind: ``"dataset"`` or ``"pair"``.
        n_pairs: pairs listed; ``pair_views``: names of the pairs with a rendered view.
        sections: ids of the sections present in the page (``summary``, ``plots``, ``pairs``, ``views``,
            ``samples``, ``lowest``; a pair report has ``views`` only).
        notes: caveats written into the report (e.g. which pairs were recomputed).
        size_bytes: size of the HTML file.
        stored_candidates: the histogram and the window pictures come from the dataset's stored candidate
            windows (False: recomputed from the photos, or a pair report).
        recomputed: pairs re-aligned from their photos (for the photo overlays, and without stored candidates
            also re-refined), in the order they were processed.
        unreadable: pairs that were to be re-aligned but whose photos could not be read (moved, deleted or
            damaged), each with its error; their views show the stored windows, or only the error.
    """

    path: Path
    kind: Literal["dataset", "pair"]
    n_pairs: int
    pair_views: list[str]
    sections: list[str]
    notes: list[str] = field(default_factory=list)
    size_bytes: int = 0
    stored_candidates: bool = False
    recomputed: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def write_report(
    source: str | Path,
    out: str | Path | None = None,
    *,
    config: ReportConfig = ReportConfig(),
    on_progress: Progress | None = None,
) -> ReportResult:
    """Write the HTML report of a dataset folder or of one aligned pair folder.

    Args:
        source: a folder written by ``dpedkit build`` (has ``dataset.json``) or by ``dpedkit align`` (has
            ``alignment.json``).
        out: the HTML file to write; default ``SOURCE/report.html``.
        config: the options (:class:`ReportConfig`).
        on_progress: called as ``on_progress(stage, done, total)`` while pairs are re-aligned.

    Returns:
        A :class:`ReportResult`.

    Raises:
        InputError: ``source`` is neither a dataset nor a pair folder.
        ShardError: the dataset is unfinished or damaged.
    """
    source = Path(source)
    out = Path(out) if out is not None else source / "report.html"
    if DatasetDir.is_dataset(source):
        page = views.dataset_page(source, config, on_progress)
        text = html.dataset_page(page)
        result = ReportResult(out, "dataset", len(page.summary.pairs), [v.name for v in page.views],
                              list(html.SECTIONS), page.notes, stored_candidates=page.stored_candidates,
                              recomputed=page.recomputed, unreadable=page.unreadable)  # fmt: skip
    elif is_pair_dir(source):
        view, notes = views.pair_folder_view(source, width=config.image_width)
        text = html.pair_page(view, notes)
        result = ReportResult(out, "pair", 1, [view.name], ["views"], notes)
    else:
        raise InputError(source, "not a dataset (no dataset.json) nor an aligned pair folder (no alignment.json)")
    write_text(out, text)
    result.size_bytes = out.stat().st_size
    log.debug("report: %s (%.1f MB)", out, result.size_bytes / 1e6)
    return result
