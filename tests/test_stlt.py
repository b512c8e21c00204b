"""Tests of the STLT layout teacher: architecture parity with the original, masking, views, errors, Hub I/O."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from mmkd_hf.models.stlt.configuration_stlt import STLTConfig
from mmkd_hf.models.stlt.modeling_stlt import STLTForVideoClassification, select_top_scoring_boxes

TINY = dict(
    hidden_size=16,
    num_attention_heads=2,
    num_spatial_layers=2,
    num_temporal_layers=2,
    intermediate_size=32,
    num_frames=4,
    max_boxes=5,
)


def tiny_model(heads=None, seed=0, **overrides) -> STLTForVideoClassification:
    torch.manual_seed(seed)
    config = STLTConfig(**{**TINY, "heads": heads or {"verb": 3, "noun": 5}, **overrides})
    model = STLTForVideoClassification(config).eval()
    with torch.no_grad():  # non-zero CLS tokens and padding rows so that mistakes show up in the outputs
        for name, parameter in model.named_parameters():
            if name.endswith("cls_token"):
                parameter.normal_()
    return model


def random_layout(batch=2, frames=4, boxes=5, views=None, seed=1, min_real=1) -> dict[str, torch.Tensor]:
    """A batch following the layout contract; padded slots hold the original's pad values."""
    generator = torch.Generator().manual_seed(seed)
    lead = (batch, views, frames) if views else (batch, frames)
    shape = (*lead, boxes)
    real_count = torch.randint(min_real, boxes + 1, lead, generator=generator)
    mask = torch.arange(boxes).expand(shape) < real_count.unsqueeze(-1)
    corners = torch.rand(*shape, 2, generator=generator) * 0.5
    sizes = torch.rand(*shape, 2, generator=generator) * 0.5
    boxes_xyxy = torch.cat((corners, corners + sizes), dim=-1)
    pad_box = torch.tensor([0.0, 0.0, 1e-9, 1e-9])
    return {
        "layout_boxes": torch.where(mask.unsqueeze(-1), boxes_xyxy, pad_box),
        "layout_categories": torch.randint(1, 3, shape, generator=generator) * mask,
        "layout_scores": torch.rand(shape, generator=generator) * mask,
        "layout_sides": torch.randint(0, 3, shape, generator=generator) * mask,
        "layout_states": torch.randint(0, 6, shape, generator=generator) * mask,
        "layout_mask": mask,
    }


class ReferenceSTLT(nn.Module):
    """Independent seq-first re-statement of the original ``STLT`` (``src/modelling/hand_models.py``: tensor layout
    and masks), same key names."""

    def __init__(self, config: STLTConfig) -> None:
        super().__init__()
        hidden = config.hidden_size

        def encoder(num_layers):
            layer = nn.TransformerEncoderLayer(
                hidden, config.num_attention_heads, config.intermediate_size, 0.0, activation="gelu"
            )
            return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

        embeddings = nn.Module()
        embeddings.category_embeddings = nn.Embedding(3, hidden, padding_idx=0)
        embeddings.box_embedding = nn.Linear(4, hidden)
        embeddings.score_embedding = nn.Linear(1, hidden)
        embeddings.side_embedding = nn.Embedding(3, hidden, padding_idx=0)
        embeddings.state_embedding = nn.Embedding(6, hidden, padding_idx=0)
        embeddings.layer_norm = nn.LayerNorm(hidden, eps=0.1)
        spatial = nn.Module()
        spatial.category_box_embeddings = embeddings
        spatial.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        spatial.transformer = encoder(config.num_spatial_layers)
        temporal = nn.Module()
        temporal.layout_embedding = spatial
        temporal.position_embeddings = nn.Embedding(config.num_frames, hidden)
        temporal.layer_norm = nn.LayerNorm(hidden, eps=0.1)
        temporal.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        temporal.transformer = encoder(config.num_temporal_layers)
        self.temporal_transformer = temporal
        self.classifiers = nn.ModuleDict({h: nn.Linear(hidden, n) for h, n in config.heads.items()})

    def forward(self, batch):
        temporal = self.temporal_transformer
        spatial = temporal.layout_embedding
        emb = spatial.category_box_embeddings
        x = (
            emb.category_embeddings(batch["layout_categories"])
            + emb.box_embedding(batch["layout_boxes"])
            + emb.score_embedding(batch["layout_scores"].unsqueeze(-1))
            + emb.side_embedding(batch["layout_sides"])
            + emb.state_embedding(batch["layout_states"])
        )
        x = emb.layer_norm(x)
        b, t, n, h = x.shape
        x = torch.cat((spatial.cls_token.expand(b, t, -1, -1), x), dim=2)
        pad = torch.cat((torch.zeros(b, t, 1, dtype=torch.bool), batch["layout_categories"] == 0), dim=2)
        x = spatial.transformer(x.flatten(0, 1).transpose(0, 1), src_key_padding_mask=pad.flatten(0, 1))
        frames = x.transpose(0, 1).reshape(b, t, n + 1, h)[:, :, 0]
        frames = temporal.layer_norm(frames + temporal.position_embeddings(torch.arange(t)))
        seq = torch.cat((frames, temporal.cls_token.expand(b, -1, -1)), dim=1).transpose(0, 1)
        blocked = ~(torch.triu(torch.ones(t + 1, t + 1)) == 1).transpose(0, 1)
        features = temporal.transformer(seq, mask=blocked)[-1]
        return {head: classifier(features) for head, classifier in self.classifiers.items()}


# ---------------------------------------------------------------- config


def test_config_defaults_match_the_original():
    config = STLTConfig()
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (768, 8, 3072)
    assert (config.num_spatial_layers, config.num_temporal_layers, config.num_frames, config.max_boxes) == (6, 6, 16, 14)
    assert config.embedding_layer_norm_eps == 0.1 and config.transformer_layer_norm_eps == 1e-5
    assert config.heads == {"action": 174} and len(config.head_labels["action"]) == 174
    assert config.modality == "layout" and config.input_key == "layout"
    assert config.model_type == "mmkd_stlt"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_size": 30}, "divisible"),
        ({"num_frames": 0}, "num_frames"),
        ({"hidden_dropout": 1.5}, "hidden_dropout"),
        ({"hidden_act": "swish"}, "hidden_act"),
        ({"heads": {}}, "heads"),
        ({"heads": {"verb": 0}}, "heads['verb']"),
        ({"heads": {"verb": 2}, "head_labels": {"verb": ["a"]}}, "head_labels['verb']"),
        ({"heads": {"verb": 2}, "head_labels": {"noun": ["a", "b"]}}, "not in heads"),
        ({"modality": "rgb"}, "modality"),
        ({"num_categories": 1}, "num_categories"),
    ],
)
def test_config_rejects_invalid_values(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        STLTConfig(**kwargs)


def test_config_round_trip_keeps_head_order(tmp_path):
    config = STLTConfig(heads={"verb": 2, "noun": 3}, head_labels={"noun": ["x", "y", "z"]})
    config.save_pretrained(tmp_path)
    loaded = STLTConfig.from_pretrained(tmp_path)
    assert list(loaded.heads.items()) == [("verb", 2), ("noun", 3)]
    assert list(loaded.head_labels) == ["verb", "noun"]
    assert loaded.head_labels == {"verb": ["verb_0", "verb_1"], "noun": ["x", "y", "z"]}


# ---------------------------------------------------------------- architecture


def test_full_size_parameter_count_and_original_key_layout():
    model = STLTForVideoClassification(STLTConfig())
    h, ffn = 768, 3072
    layer = (3 * h * h + 3 * h) + (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 4 * h
    embeddings = 3 * h + (4 * h + h) + (h + h) + 3 * h + 6 * h + 2 * h
    temporal_extra = 16 * h + 2 * h + h
    expected = embeddings + h + 12 * layer + temporal_extra + (h * 174 + 174)
    assert sum(p.numel() for p in model.parameters()) == expected
    keys = set(model.state_dict())
    prefix = "temporal_transformer.layout_embedding."
    for name in ("category_embeddings.weight", "box_embedding.weight", "score_embedding.bias",
                 "side_embedding.weight", "state_embedding.weight", "layer_norm.weight"):
        assert prefix + "category_box_embeddings." + name in keys
    assert prefix + "cls_token" in keys
    for name in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.bias", "linear2.weight",
                 "norm1.weight", "norm2.bias"):
        assert f"{prefix}transformer.layers.5.{name}" in keys
        assert f"temporal_transformer.transformer.layers.5.{name}" in keys
    for name in ("position_embeddings.weight", "layer_norm.weight", "cls_token"):
        assert f"temporal_transformer.{name}" in keys
    assert {"classifiers.action.weight", "classifiers.action.bias"} <= keys


def test_matches_an_independent_seq_first_reference():
    model = tiny_model(hidden_dropout=0.0)
    reference = ReferenceSTLT(model.config).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    batch = random_layout(batch=3)
    with torch.no_grad():
        ours = model(**batch).logits
        theirs = reference(batch)
    assert list(ours) == ["verb", "noun"]
    for head in ours:
        torch.testing.assert_close(ours[head], theirs[head], atol=1e-5, rtol=1e-5)


def test_padded_slot_values_do_not_change_logits():
    model = tiny_model()
    batch = random_layout(batch=2, boxes=5)
    padded = ~batch["layout_mask"]
    garbage = dict(batch)
    generator = torch.Generator().manual_seed(7)
    garbage["layout_boxes"] = torch.where(
        padded.unsqueeze(-1), torch.randn(*padded.shape, 4, generator=generator) * 100, batch["layout_boxes"]
    )
    garbage["layout_boxes"][tuple(padded.nonzero()[0].tolist())] = float("nan")
    for name, high in (("layout_categories", 50), ("layout_sides", 50), ("layout_states", 50)):
        garbage[name] = torch.where(padded, torch.randint(-5, high, padded.shape, generator=generator), batch[name])
    garbage["layout_scores"] = torch.where(padded, torch.randn(padded.shape, generator=generator), batch["layout_scores"])
    assert padded.any()
    with torch.no_grad():
        clean, dirty = model(**batch).logits, model(**garbage).logits
    for head in clean:
        torch.testing.assert_close(dirty[head], clean[head], atol=1e-5, rtol=0)


def test_frames_without_boxes_give_finite_logits():
    model = tiny_model()
    batch = random_layout(batch=2)
    batch["layout_mask"][0, 1] = False  # one empty frame
    batch["layout_mask"][1] = False  # a clip without any box
    with torch.no_grad():
        logits = model(**batch).logits
    assert all(torch.isfinite(value).all() for value in logits.values())


def test_views_are_folded_and_equal_separate_runs():
    model = tiny_model()
    batch = random_layout(batch=2, views=3)
    with torch.no_grad():
        logits = model(**batch).logits
        for view in range(3):
            single = model(**{key: value[:, view] for key, value in batch.items()}).logits
            for head in logits:
                torch.testing.assert_close(logits[head][:, view], single[head], atol=1e-5, rtol=1e-5)
    assert logits["verb"].shape == (2, 3, 3) and logits["noun"].shape == (2, 3, 5)


def test_loss_is_mean_of_head_cross_entropies_on_view_mean_logits():
    model = tiny_model()
    batch = random_layout(batch=2, views=2)
    labels = {"verb": torch.tensor([0, 2]), "noun": torch.tensor([4, 1]), "action": torch.tensor([9, 9])}
    with torch.no_grad():
        output = model(**batch, labels=labels)
    expected = torch.stack(
        [F.cross_entropy(output.logits[head].mean(1), labels[head]) for head in ("verb", "noun")]
    ).mean()
    torch.testing.assert_close(output.loss, expected)


def test_single_head_accepts_a_label_tensor_and_trains():
    model = tiny_model(heads={"action": 4}).train()
    batch = random_layout(batch=3)
    output = model(**batch, labels=torch.tensor([0, 1, 3]))
    output.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert math.isfinite(output.loss.item()) and all(g is not None for g in grads)
    assert model.temporal_transformer.layout_embedding.cls_token.grad.abs().sum() > 0


def test_keeps_the_highest_scoring_boxes_per_frame():
    scores = torch.tensor([[0.2, 0.9, 0.5, 0.1, 0.7, 0.95]])
    mask = torch.tensor([[True, True, True, True, True, False]])  # the 0.95 box is padding
    layout = {
        "layout_boxes": torch.arange(24, dtype=torch.float32).view(1, 6, 4),
        "layout_categories": torch.tensor([[1, 2, 1, 2, 1, 0]]),
        "layout_scores": scores,
        "layout_sides": torch.tensor([[0, 1, 0, 2, 0, 0]]),
        "layout_states": torch.tensor([[0, 3, 0, 4, 0, 0]]),
        "layout_mask": mask,
    }
    kept = select_top_scoring_boxes(layout, max_boxes=3)
    assert torch.equal(kept["layout_scores"], torch.tensor([[0.9, 0.5, 0.7]]))  # original order among the kept
    assert kept["layout_boxes"][0, :, 0].tolist() == [4.0, 8.0, 16.0]
    assert kept["layout_sides"].tolist() == [[1, 0, 0]] and kept["layout_mask"].all()
    assert select_top_scoring_boxes(layout, max_boxes=6) is layout


def test_more_boxes_than_max_equal_the_preselected_boxes():
    model = tiny_model(max_boxes=3)
    batch = random_layout(batch=2, boxes=6, min_real=4)
    selected = select_top_scoring_boxes(batch, 3)
    with torch.no_grad():
        full, pre = model(**batch).logits, model(**selected).logits
    for head in full:
        torch.testing.assert_close(full[head], pre[head])


def test_fewer_frames_work_and_too_many_frames_fail():
    model = tiny_model()
    with torch.no_grad():
        assert model(**random_layout(frames=2)).logits["verb"].shape == (2, 3)
    with pytest.raises(ValueError, match="5 frames.*num_frames=4"):
        model(**random_layout(frames=5))


def test_clear_errors_for_bad_inputs():
    model = tiny_model()
    batch = random_layout()
    with pytest.raises(ValueError, match=r"layout_scores must have shape \(2, 4, 5\).*got \(2, 4, 3\)"):
        model(**{**batch, "layout_scores": batch["layout_scores"][..., :3]})
    with pytest.raises(ValueError, match=r"layout_boxes must have shape"):
        model(**{**batch, "layout_boxes": batch["layout_boxes"][..., :3]})
    bad_categories = batch["layout_categories"].clone()
    bad_categories[batch["layout_mask"]] = 3
    with pytest.raises(ValueError, match=r"layout_categories of real boxes must be in \[0, 2\]"):
        model(**{**batch, "layout_categories": bad_categories})
    with pytest.raises(ValueError, match="layout_mask must be a bool"):
        model(**{**batch, "layout_mask": batch["layout_mask"].long()})
    with pytest.raises(ValueError, match="labels lack heads \\['noun'\\]"):
        model(**batch, labels={"verb": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="single tensor"):
        model(**batch, labels=torch.tensor([0, 1]))


def test_save_and_auto_model_round_trip_is_bit_identical(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "modeling_stlt.py").is_file() and (tmp_path / "configuration_stlt.py").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), STLTConfig)
    batch = random_layout()
    for auto_class in (AutoModel, AutoModelForVideoClassification):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, STLTForVideoClassification)
        with torch.no_grad():
            expected, got = model(**batch).logits, loaded(**batch).logits
        assert list(got) == list(expected)
        for head in expected:
            assert torch.equal(got[head], expected[head])


def test_saved_folder_loads_with_trust_remote_code_without_the_package(tmp_path):
    """The folder ships its own code: a fresh interpreter that never imports mmkd_hf gets the same logits."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file, save_file

    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    batch = random_layout()
    save_file({key: value.contiguous() for key, value in batch.items()}, str(tmp_path / "batch.safetensors"))
    script = (
        "import sys, torch\n"
        "from safetensors.torch import load_file, save_file\n"
        "from transformers import AutoModel\n"
        f"model = AutoModel.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()\n"
        "assert 'mmkd_hf' not in sys.modules\n"
        "print(','.join(model.config.heads))\n"
        f"batch = load_file({str(tmp_path / 'batch.safetensors')!r})\n"
        "with torch.no_grad():\n"
        "    logits = model(**batch).logits\n"
        f"save_file(logits, {str(tmp_path / 'logits.safetensors')!r})\n"
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "verb,noun"
    remote = load_file(str(tmp_path / "logits.safetensors"))
    with torch.no_grad():
        local = model(**batch).logits
    assert set(remote) == set(local)
    for head in local:
        torch.testing.assert_close(remote[head], local[head], rtol=0, atol=1e-6)  # other process, other thread count
