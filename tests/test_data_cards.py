"""Dataset cards: one source of truth shared by the builders' DatasetInfo and the hub card template."""

import pytest

from mmkd_hf.data import DATASETS, build_metadata, dataset_card_info
from mmkd_hf.hub.cards import render_dataset_card


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_card_info_complete(name):
    info = dataset_card_info(name)
    assert info["license"] and info["citation"].startswith("@") and len(info["description"]) > 50


def test_rendered_card_matches_builder_info(tiny_epic, data_cache):
    splits = build_metadata("epic-kitchens-100", tiny_epic, data_cache)
    builder_info = splits["train"].info
    card = render_dataset_card("epic-kitchens-100", splits=splits)
    text = str(card)
    assert card.data.license == "cc-by-nc-4.0" == builder_info.license
    assert builder_info.description in text and builder_info.citation in text
    assert "| train | 3 |" in text and "| validation | 2 |" in text and "`verb_class`" in text
    assert dataset_card_info("mini-kitchens")["license"] == "cc-by-4.0"
    assert "Qualcomm" in render_dataset_card("something-something-v2").text
