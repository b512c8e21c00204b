"""Hub integration: model/dataset cards (:mod:`.cards`) and ``mmkd-hf push`` (:mod:`.push`)."""

from .cards import PAPER_BIBTEX, render_dataset_card, render_model_card, write_model_card
from .push import PushError, push_run

__all__ = ["PAPER_BIBTEX", "PushError", "push_run", "render_dataset_card", "render_model_card", "write_model_card"]
