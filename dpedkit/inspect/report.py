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
from dpedkit.dataset.source import require_dataset
from dpedkit.dataset.storage import local_dataset
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
        n_pairs: pairs listed (photos left without a partner excluded: ``unpaired``); ``pair_views``: names of the
            pairs with a rendered view.
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
        imported: the dataset was imported (``import-dped``, ``import-zrr``): patch pairs only, no pairs of photos.
        patch_pairs: patch pairs stored in all splits (dataset reports).
        unpaired: photos the build's pairing left without a partner (rows of the report's table, not pairs).
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
    imported: bool = False
    patch_pairs: int = 0
    unpaired: int = 0


def write_report(
    source: str | Path,
    out: str | Path | None = None,
    *,
    config: ReportConfig = ReportConfig(),
    on_progress: Progress | None = None,
    overwrite: bool = False,
) -> ReportResult:
    """Write the HTML report of a dataset folder or of one aligned pair folder.

    Args:
        source: a folder written by ``dpedkit build`` (has ``dataset.json``) or by ``dpedkit align`` (has
            ``alignment.json``).
        out: the HTML file to write; default ``SOURCE/report.html``.
        config: the options (:class:`ReportConfig`).
        on_progress: called as ``on_progress(stage, done, total)`` while pairs are re-aligned.
        overwrite: replace an existing ``out`` that is not an earlier report (never a file of a dataset folder).

    Returns:
        A :class:`ReportResult`.

    Raises:
        InputError: ``source`` is neither a dataset nor a pair folder; ``out`` is an existing file that is not an
            earlier report (without ``overwrite``), or lies in a dataset folder and is not a report.
        ShardError: the dataset is unfinished or damaged.
    """
    source = local_dataset(source)  # a dataset at a URL: its local copy
    source = Path(source)
    out = Path(out) if out is not None else source / "report.html"
    check_report_path(out, overwrite=overwrite)  # before any work: a refused name costs nothing
    if DatasetDir.is_dataset(source):
        page = views.dataset_page(source, config, on_progress)
        text = html.dataset_page(page)
        unpaired = page.summary.status_counts.get("no-partner", 0)
        result = ReportResult(out, "dataset", len(page.summary.pairs) - unpaired, [v.name for v in page.views],
                              html.page_sections(page), page.notes, stored_candidates=page.stored_candidates,
                              recomputed=page.recomputed, unreadable=page.unreadable,
                              imported=page.summary.imported, patch_pairs=page.summary.patches_kept,
                              unpaired=unpaired)  # fmt: skip
    elif is_pair_dir(source):
        view, notes = views.pair_folder_view(source, width=config.image_width)
        text = html.pair_page(view, notes)
        result = ReportResult(out, "pair", 1, [view.name], ["views"], notes)
    else:
        require_dataset(source, "inspect")
        raise InputError(source, "not a dataset (no dataset.json) nor an aligned pair folder (no alignment.json)")
    write_text(out, text)
    result.size_bytes = out.stat().st_size
    log.debug("report: %s (%.1f MB)", out, result.size_bytes / 1e6)
    return result


def is_report(path: Path) -> bool:
    """True when ``path`` is an HTML report written by ``dpedkit inspect`` (this version's or an older one's)."""
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return False
    return head.startswith("<!DOCTYPE html>") and (html.GENERATOR in head or "<p class='note'>dpedkit " in head)


def check_report_path(out: Path, *, overwrite: bool) -> None:
    """Refuse to write the report over a file that is not an earlier report (InputError naming it).

    Inside a dataset folder (``out`` or a folder above it holds ``dataset.json``) only a report is replaced, even
    with ``overwrite``: the dataset's own files are never written over.
    """
    if out.is_dir():
        raise InputError(out, "is a folder; give the HTML file to write (-o FILE.html)")
    if not (out.exists() or out.is_symlink()) or is_report(out):
        return
    in_dataset = any(DatasetDir.is_dataset(folder) for folder in out.resolve().parents)
    if in_dataset:
        raise InputError(out, "is a file of a dataset folder, not a report: choose another -o")
    if not overwrite:
        raise InputError(out, "exists and is not an earlier dpedkit report; use --overwrite to replace it")
