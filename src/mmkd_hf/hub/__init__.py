"""Hub integration: model/dataset cards (:mod:`.cards`), ``mmkd-hf push`` (:mod:`.push`) and
``mmkd-hf export-dataset`` (:mod:`.dataset_export`)."""

from .cards import PAPER_BIBTEX, render_dataset_card, render_model_card, write_model_card
from .dataset_export import ExportError, export_dataset
from .push import PushError, push_run

__all__ = ["PAPER_BIBTEX", "ExportError", "PushError", "export_dataset", "push_run", "render_dataset_card",
           "render_model_card", "write_model_card"]
