"""Before any decoding: does every segment of a split have its files for the requested modalities?

A reader that can check its sources has ``missing_sources(dataset, modalities) -> list[MissingSource]`` (one
entry per video and modality that fails) and ``SOURCE_LAYOUT`` (modality -> where the files are expected). The
check costs a few file-system calls per video (a ``stat`` of the last frame a video's segments need, a listing
only when it is missing, 512 bytes of a ``.tar``, a video's container header), never one per frame, so it runs
on the full EPIC-KITCHENS-100 in seconds. :func:`mmkd_hf.data.load_dataset` runs it and either raises one
:class:`~mmkd_hf.data.errors.DataFormatError` or, with ``skip_bad_samples``, drops the segments concerned.
A modality in ``tolerate`` (audio, layout of a multimodal load) is reported apart: its segments are kept and the
transform marks them (``modality_present``), so the teachers of the other modalities still teach them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import datasets

from .configs import MODALITIES

__all__ = ["MissingSource", "SourceReport", "check_sources"]

#: videos named per modality in a message
EXAMPLES = 3


@dataclass
class MissingSource:
    """The files of one video for one modality are missing (or too short) for the dataset ``rows`` listed.

    Attributes:
        modality: ``"rgb"``, ``"flow"``, ``"audio"`` or ``"layout"``.
        video_id: the video concerned.
        reason: what is wrong, e.g. ``"no frame folder, .tar or video"`` or ``"frames end at 120 (needs 400)"``.
        rows: positions (in the split) of the segments that cannot be read.
    """

    modality: str
    video_id: str
    reason: str
    rows: list[int] = field(default_factory=list)


@dataclass
class SourceReport:
    """Result of :func:`check_sources` over one split.

    Attributes:
        root: the folder the files are looked up in.
        total: segments checked.
        missing: one entry per (video, modality) that fails.
        layout: modality -> where its files are expected (from the reader).
        segment_ids: ids of the segments that cannot be read, in dataset order.
        tolerated_missing: one entry per (video, modality) that fails for a tolerated modality: those segments are
            kept (not in ``bad_rows``) and marked absent for that modality by the transform.
    """

    root: str
    total: int
    missing: list[MissingSource]
    layout: dict[str, str]
    segment_ids: list[str] = field(default_factory=list)
    tolerated_missing: list[MissingSource] = field(default_factory=list)

    @property
    def bad_rows(self) -> list[int]:
        return sorted({row for entry in self.missing for row in entry.rows})

    @property
    def count(self) -> int:
        """Number of segments that cannot be read."""
        return len(self.bad_rows)

    @property
    def marked_count(self) -> int:
        """Number of segments kept without one or more tolerated modalities."""
        return len({row for entry in self.tolerated_missing for row in entry.rows})

    def per_modality(self) -> dict[str, dict[str, int]]:
        """modality -> ``{"videos": n, "segments": n}`` (segments that cannot be read)."""
        return _per_modality(self.missing)

    def tolerated_per_modality(self) -> dict[str, dict[str, int]]:
        """modality -> ``{"videos": n, "segments": n}`` (segments kept and marked without that modality)."""
        return _per_modality(self.tolerated_missing)

    def summary(self) -> str:
        """One line: counts per modality, the first videos and where their files are expected."""
        parts = []
        everything = self.missing + self.tolerated_missing
        tolerated = {entry.modality for entry in self.tolerated_missing}
        counts = _per_modality(everything)
        for modality, stats in counts.items():
            entries = [e for e in everything if e.modality == modality]
            more = f" and {len(entries) - EXAMPLES} more" if len(entries) > EXAMPLES else ""
            if len({e.reason for e in entries[:EXAMPLES]}) == 1:
                examples = ", ".join(e.video_id for e in entries[:EXAMPLES]) + f"{more}: {entries[0].reason}"
            else:
                examples = "; ".join(f"{e.video_id}: {e.reason}" for e in entries[:EXAMPLES]) + more
            expected = self.layout.get(modality)
            parts.append(f"{modality}: {stats['videos']} video(s), {stats['segments']} segment(s) ({examples})"
                         + (f", expected {expected}" if expected else "")
                         + (" [tolerated: kept, marked without it]" if modality in tolerated else ""))
        lacking = len({row for entry in everything for row in entry.rows})
        return f"{lacking} of {self.total} segments lack their files — " + " | ".join(parts)


def _per_modality(missing: list[MissingSource]) -> dict[str, dict[str, int]]:
    """modality -> ``{"videos": n, "segments": n}`` over ``missing``, in :data:`MODALITIES` order."""
    out: dict[str, dict[str, int]] = {}
    for entry in missing:
        stats = out.setdefault(entry.modality, {"videos": 0, "segments": 0, "_rows": set()})
        stats["videos"] += 1
        stats["_rows"].update(entry.rows)
    for stats in out.values():
        stats["segments"] = len(stats.pop("_rows"))
    order = {modality: i for i, modality in enumerate(MODALITIES)}
    return dict(sorted(out.items(), key=lambda item: order.get(item[0], len(order))))


def check_sources(
    reader, dataset: datasets.Dataset, modalities: Sequence[str], tolerate: Sequence[str] = ()
) -> SourceReport | None:
    """Check the files of every row of ``dataset`` (metadata, no transform) for ``modalities``; None when the
    reader cannot check (it has no ``missing_sources``) or nothing is missing. Failures of a modality in
    ``tolerate`` go to ``tolerated_missing`` (segments kept) instead of ``missing``."""
    missing_sources = getattr(reader, "missing_sources", None)
    if missing_sources is None or len(dataset) == 0:
        return None
    found = missing_sources(dataset, tuple(modalities))
    if not found:
        return None
    missing = [entry for entry in found if entry.modality not in tolerate]
    tolerated = [entry for entry in found if entry.modality in tolerate]
    root = str(dataset[0]["data_root"]) if "data_root" in dataset.column_names else ""
    report = SourceReport(root=root, total=len(dataset), missing=missing, layout=dict(getattr(reader, "SOURCE_LAYOUT", {})),
                          tolerated_missing=tolerated)
    if "segment_id" in dataset.column_names:
        report.segment_ids = [str(sid) for sid in dataset.select(report.bad_rows)["segment_id"]]
    return report
