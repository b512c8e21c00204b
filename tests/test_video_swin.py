"""Video Swin (student and RGB/flow/audio teachers): config, forward contract, loss, HF I/O, torchvision parity."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.video import swin3d_t
from torchvision.models.video.swin_transformer import SwinTransformer3d
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

import mmkd_hf  # noqa: F401  (registers the Auto classes)
from mmkd_hf.models.video_swin.configuration_video_swin import VideoSwinConfig
from mmkd_hf.models.video_swin.convert_torchvision import (
    convert_torchvision_swin3d_state_dict,
    video_swin_from_torchvision,
)
from mmkd_hf.models.video_swin.modeling_video_swin import (
    VideoSwinDropPath,
    VideoSwinForVideoClassification,
    VideoSwinModel,
    drop_path_rates,
    effective_window_and_shift,
    relative_position_index,
    shifted_window_mask,
)

TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), num_frames=4, image_size=32)
# Two blocks in the first stage so that a shifted block runs on the 8x8 first-stage map of a 32x32 clip.
TINY_SHIFTED = dict(embed_dim=16, depths=(2, 1, 1, 1), num_heads=(1, 2, 2, 2), num_frames=4, image_size=32)


def tiny_model(seed: int = 0, **overrides) -> VideoSwinForVideoClassification:
    torch.manual_seed(seed)
    config = VideoSwinConfig(**{**TINY, "drop_path_rate": 0.0, **overrides})
    return VideoSwinForVideoClassification(config).eval()


def clips(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ config


def test_default_config_is_video_swin_t_of_the_paper():
    config = VideoSwinConfig()
    assert config.patch_size == (2, 4, 4) and config.window_size == (8, 7, 7)
    assert config.embed_dim == 96 and config.depths == (2, 2, 6, 2) and config.num_heads == (3, 6, 12, 24)
    assert config.drop_path_rate == 0.2 and config.heads == {"action": 174}
    assert config.num_features == 768 and config.input_key == "pixel_values"
    assert config.image_mean == [0.485, 0.456, 0.406] and config.image_std == [0.229, 0.224, 0.225]
    assert config.head_labels["action"][:2] == ["action_0", "action_1"] and len(config.head_labels["action"]) == 174
    with torch.device("meta"):  # no memory, no init cost
        backbone = VideoSwinModel(config)
    assert sum(p.numel() for p in backbone.parameters()) == 27_850_470  # Video Swin-T of the original src/modelling/swin.py


@pytest.mark.parametrize(
    ("modality", "num_channels", "key", "mean", "std"),
    [
        ("rgb", None, "pixel_values", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("flow", None, "flow_values", [0.485, 0.456], [0.229, 0.224]),
        ("flow", 3, "flow_values", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("audio", None, "audio_values", [-28.1125], [16.5627]),
        ("audio", 3, "audio_values", [-28.1125] * 3, [16.5627] * 3),
    ],
)
def test_modality_defaults(modality, num_channels, key, mean, std):
    config = VideoSwinConfig(modality=modality, num_channels=num_channels)
    assert config.input_key == key
    assert config.num_channels == len(mean)
    assert config.image_mean == mean and config.image_std == std


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modality": "depth"}, "modality"),
        ({"depths": (2, 2), "num_heads": (3,)}, "one entry per stage"),
        ({"embed_dim": 10, "num_heads": (3, 6, 12, 24)}, "not divisible"),
        ({"patch_size": (2, 4)}, "patch_size"),
        ({"window_size": (8, 0, 7)}, "window_size"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"heads": {}}, "heads"),
        ({"heads": {"verb": 0}}, "heads\\['verb'\\]"),
        ({"heads": {"verb": 2}, "head_labels": {"verb": ["a"]}}, "expected 2 class names, got 1"),
        ({"heads": {"verb": 2}, "head_labels": {"noun": ["a", "b"]}}, "not in heads"),
        ({"num_channels": 3, "image_mean": [0.5, 0.5]}, "image_mean: expected 3 values"),
        ({"image_std": [0.2, 0.0, 0.2]}, "must be > 0"),
        ({"num_channels": 0}, "num_channels"),
    ],
)
def test_config_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoSwinConfig(**kwargs)


def test_config_json_round_trip(tmp_path):
    config = VideoSwinConfig(
        modality="flow", num_channels=3, heads={"verb": 3, "noun": 2}, head_labels={"noun": ["pan", "cup"]}
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mmkd_video_swin" and saved["head_order"] == ["verb", "noun"]
    assert list(saved["heads"]) == ["noun", "verb"]  # transformers writes config.json with sorted keys
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, VideoSwinConfig)
    assert list(loaded.heads) == ["verb", "noun"] and list(loaded.head_labels) == ["verb", "noun"]
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.head_labels == {"verb": ["verb_0", "verb_1", "verb_2"], "noun": ["pan", "cup"]}


# ------------------------------------------------------------------------------------------------ pure helpers


def test_drop_path_schedule_is_linspace_over_all_blocks():
    assert drop_path_rates(0.2, 12) == pytest.approx(torch.linspace(0, 0.2, 12).tolist())
    assert drop_path_rates(0.3, 1) == [0.0]
    model = VideoSwinModel(VideoSwinConfig(embed_dim=8, depths=(2, 1, 3, 1), num_heads=(1, 1, 1, 1)))
    rates = [block.drop_path.drop_prob for stage in model.layers for block in stage.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.2, 7).tolist())


def test_drop_path_drops_whole_samples_in_training_only():
    drop = VideoSwinDropPath(0.5)
    x = torch.ones(64, 2, 3)
    torch.manual_seed(0)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize(
    ("feature", "window", "shift"),
    [
        ((8, 56, 56), (8, 7, 7), (0, 3, 3)),  # stage 1 at 16x224x224: T' = 8 = window, no temporal shift
        ((8, 7, 7), (8, 7, 7), (0, 0, 0)),  # stage 4: no shift at all
        ((2, 8, 8), (2, 7, 7), (0, 3, 3)),  # short clip: window shrinks in time
        ((10, 5, 9), (8, 5, 7), (4, 0, 3)),
    ],
)
def test_window_shrinks_and_shift_vanishes_where_feature_fits(feature, window, shift):
    assert effective_window_and_shift(feature, (8, 7, 7), (4, 3, 3)) == (window, shift)


def test_relative_position_index_matches_brute_force():
    window = (2, 3, 4)
    index = relative_position_index(window)
    tokens = list(itertools.product(*(range(w) for w in window)))
    strides = ((2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1)
    for i, query in enumerate(tokens):
        for j, key in enumerate(tokens):
            expected = sum((q - k + w - 1) * s for q, k, w, s in zip(query, key, window, strides))
            assert index[i, j] == expected
    assert index.max() == (2 * 2 - 1) * (2 * 3 - 1) * (2 * 4 - 1) - 1


def _mask_by_slice_assignment(padded, window, shift):
    """The original/torchvision construction: label slices, partition, compare labels."""
    labels = torch.zeros(padded)
    count = 0
    slices = [((0, -w), (-w, -s), (-s, None)) for w, s in zip(window, shift)]
    for d, h, w in itertools.product(*slices):
        labels[d[0] : d[1], h[0] : h[1], w[0] : w[1]] = count
        count += 1
    wt, wh, ww = window
    labels = labels.view(padded[0] // wt, wt, padded[1] // wh, wh, padded[2] // ww, ww)
    labels = labels.permute(0, 2, 4, 1, 3, 5).reshape(-1, wt * wh * ww)
    diff = labels[:, None, :] - labels[:, :, None]
    return diff.ne(0).float() * -100.0


@pytest.mark.parametrize(
    ("padded", "window", "shift"),
    [((8, 14, 14), (8, 7, 7), (0, 3, 3)), ((16, 14, 21), (8, 7, 7), (4, 3, 3)), ((4, 6, 6), (2, 3, 3), (1, 1, 0))],
)
def test_shifted_window_mask_matches_slice_construction(padded, window, shift):
    ours = shifted_window_mask(padded, window, shift, torch.device("cpu"))
    assert torch.equal(ours, _mask_by_slice_assignment(padded, window, shift))
    assert (ours == -100).any() and (ours == 0).any()


# ------------------------------------------------------------------------------------------------ forward


def test_output_shapes_for_clips_and_views():
    model = tiny_model(heads={"verb": 5, "noun": 7})
    with torch.no_grad():
        out = model(clips(2, 4, 3, 32, 32), output_hidden_states=True)
        multi = model(clips(2, 3, 4, 3, 32, 32))
    assert list(out.logits) == ["verb", "noun"]
    assert out.logits["verb"].shape == (2, 5) and out.logits["noun"].shape == (2, 7)
    assert out.pooled_output.shape == (2, 128)
    # patch embedding + one entry per stage, channels-last
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (2, 2, 8, 8, 16), (2, 2, 8, 8, 16), (2, 2, 4, 4, 32), (2, 2, 2, 2, 64), (2, 2, 1, 1, 128)
    ]
    assert multi.logits["verb"].shape == (2, 3, 5) and multi.pooled_output.shape == (2, 3, 128)
    assert out.loss is None


def test_backbone_output_is_channels_last_and_pooled():
    model = tiny_model().backbone
    with torch.no_grad():
        out = model(clips(3, 4, 3, 32, 32))
    assert out.last_hidden_state.shape == (3, 2, 1, 1, 128)
    assert torch.allclose(out.pooler_output, out.last_hidden_state.mean(dim=(1, 2, 3)))


def test_views_are_kept_and_match_single_view_forward():
    model = tiny_model(**{k: v for k, v in TINY_SHIFTED.items()})
    views = clips(2, 3, 4, 3, 32, 32)
    with torch.no_grad():
        multi = model(views).logits["action"]
        single = model(views[:, 1]).logits["action"]
    assert torch.allclose(multi[:, 1], single, atol=1e-6)
    assert not torch.allclose(multi[:, 0], multi[:, 1])


def test_batched_and_single_clip_forward_agree():
    # b > 1 and b == 1 take different attention layouts for shifted windows
    model = tiny_model(**TINY_SHIFTED)
    x = clips(3, 6, 3, 40, 36)
    with torch.no_grad():
        batched = model(x).logits["action"]
        single = torch.cat([model(x[i : i + 1]).logits["action"] for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_cached_bias_follows_weight_updates():
    model = tiny_model(**TINY_SHIFTED)
    x = clips(1, 4, 3, 32, 32)
    with torch.no_grad():
        model(x)  # fills the no-grad bias caches
        for stage in model.backbone.layers:
            for block in stage.blocks:
                block.attn.relative_position_bias_table.mul_(-3.0).add_(0.5)
        cached = model(x).logits["action"]
    fresh = tiny_model(**TINY_SHIFTED)
    fresh.load_state_dict(model.state_dict())
    with torch.enable_grad():
        expected = fresh(x).logits["action"]  # with autograd on, nothing is cached
    assert torch.allclose(cached, expected.detach(), atol=1e-6)


def test_normalisation_happens_inside_forward():
    normalising = tiny_model(seed=3)
    plain = tiny_model(seed=3, normalize_inputs=False)
    x = clips(1, 4, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        a = normalising(x).logits["action"]
        b = plain((x - mean) / std).logits["action"]
        c = plain(x).logits["action"]
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)


def test_uint8_clips_are_divided_by_255_inside_forward():
    model = tiny_model(seed=4)
    flow_model = tiny_model(seed=5, modality="flow", num_channels=3)
    raw = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(raw).logits["action"], model(raw.float() / 255.0).logits["action"])
        uv = raw[:, :, :2]
        assert torch.equal(flow_model(flow_values=uv).logits["action"],
                           flow_model(flow_values=uv.float() / 255.0).logits["action"])


def test_three_channel_flow_model_appends_zero_channel_to_uv():
    model = tiny_model(modality="flow", num_channels=3)
    uv = clips(2, 4, 2, 32, 32)
    with torch.no_grad():
        from_uv = model(flow_values=uv).logits["action"]
        from_uv0 = model(torch.cat([uv, torch.zeros(2, 4, 1, 32, 32)], dim=2)).logits["action"]
        # a flow model reads `flow_values` from a multimodal batch, not the RGB `pixel_values`
        routed = model(pixel_values=clips(2, 4, 3, 32, 32, seed=9), flow_values=uv).logits["action"]
    assert torch.allclose(from_uv, from_uv0, atol=1e-6) and torch.allclose(routed, from_uv, atol=1e-6)


def test_three_channel_audio_model_repeats_single_channel():
    model = tiny_model(modality="audio", num_channels=3)
    spectrogram = -100 + 100 * clips(1, 4, 1, 32, 32)
    with torch.no_grad():
        mono = model(audio_values=spectrogram).logits["action"]
        repeated = model(audio_values=spectrogram.repeat(1, 1, 3, 1, 1)).logits["action"]
    assert torch.allclose(mono, repeated, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 4, 4, 32, 32), "expected 3 channels at dim -3 .* got 4"),
        ((1, 4, 2, 32, 32), "expected 3 channels at dim -3 .* got 2"),  # an RGB model does not pad channels
        ((1, 1, 3, 32, 32), "expected at least 2 frames .* got 1"),
        ((4, 3, 32, 32), "expected input \\[B, T, C, H, W\\] or \\[B, V, T, C, H, W\\], got 4 dims"),
    ],
)
def test_bad_input_raises_expected_vs_given(shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(torch.zeros(shape))


def test_missing_input_raises():
    with pytest.raises(ValueError, match="expected input `audio_values`"):
        tiny_model(modality="audio")(flow_values=torch.zeros(1, 4, 1, 32, 32))


def test_loss_is_mean_over_heads_of_ce_on_view_mean_logits():
    model = tiny_model(heads={"verb": 5, "noun": 7})
    views = clips(2, 3, 4, 3, 32, 32)
    labels = {"verb": torch.tensor([1, 4]), "noun": torch.tensor([6, 0]), "action": torch.tensor([0, 0])}
    with torch.no_grad():
        out = model(views, labels=labels)
    expected = (
        F.cross_entropy(out.logits["verb"].mean(1), labels["verb"])
        + F.cross_entropy(out.logits["noun"].mean(1), labels["noun"])
    ) / 2
    assert torch.allclose(out.loss, expected)
    with pytest.raises(ValueError, match="labels lack heads \\['noun'\\]"):
        model(views, labels={"verb": labels["verb"]})
    with pytest.raises(ValueError, match="exactly one head"):
        model(views, labels=labels["verb"])
    with pytest.raises(ValueError, match="must have shape \\[2\\], got \\(3,\\)"):
        model(views, labels={"verb": torch.tensor([0, 1, 2]), "noun": labels["noun"]})


def test_single_tensor_labels_with_one_head():
    model = tiny_model()
    x, labels = clips(2, 4, 3, 32, 32), torch.tensor([3, 170])
    with torch.no_grad():
        assert torch.equal(model(x, labels=labels).loss, model(x, labels={"action": labels}).loss)


def test_gradient_reaches_every_parameter():
    model = tiny_model(**TINY_SHIFTED, heads={"verb": 3, "noun": 4}).train()
    out = model(clips(2, 4, 3, 32, 32), labels={"verb": torch.tensor([0, 2]), "noun": torch.tensor([1, 3])})
    out.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_same_gradients():
    x, labels = clips(2, 4, 3, 32, 32), torch.tensor([1, 2])
    grads, recomputed = [], []
    for checkpointing in (False, True):
        model = tiny_model(seed=5, **TINY_SHIFTED).train()  # drop_path_rate 0
        if checkpointing:
            model.activation_checkpointing_enable()
            assert model.is_activation_checkpointing
            blocks = [block for stage in model.backbone.layers for block in stage.blocks]
            assert all(block.gradient_checkpointing for block in blocks)
            for block in blocks:  # count the blocks that really run through the checkpoint function
                function = block._gradient_checkpointing_func

                def counted(*args, _function=function, **kwargs):
                    recomputed.append(1)
                    return _function(*args, **kwargs)

                block._gradient_checkpointing_func = counted
        model(x, labels=labels).loss.backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert len(recomputed) == sum(TINY_SHIFTED["depths"])
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6), name


def test_compiles_without_graph_breaks():
    model = tiny_model(**TINY_SHIFTED, heads={"verb": 3, "noun": 4})
    x = clips(2, 18, 3, 32, 32)  # 18 frames: temporal shift and padding too
    with torch.no_grad():
        eager = model(x).logits
        compiled = torch.compile(model, backend="eager", fullgraph=True)(x).logits
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-6) for k in eager)


# ------------------------------------------------------------------------------------------------ HF I/O


def test_state_dict_uses_the_original_key_layout():
    keys = set(tiny_model(**TINY_SHIFTED, heads={"verb": 3, "noun": 4}).state_dict())
    for key in (
        "backbone.patch_embed.proj.weight",
        "backbone.patch_embed.norm.bias",
        "backbone.layers.0.blocks.1.attn.relative_position_bias_table",
        "backbone.layers.0.blocks.1.attn.relative_position_index",
        "backbone.layers.0.blocks.0.attn.qkv.weight",
        "backbone.layers.0.blocks.0.attn.proj.bias",
        "backbone.layers.0.blocks.0.mlp.fc1.weight",
        "backbone.layers.0.blocks.0.mlp.fc2.bias",
        "backbone.layers.0.blocks.0.norm2.weight",
        "backbone.layers.2.downsample.reduction.weight",
        "backbone.layers.2.downsample.norm.weight",
        "backbone.norm.weight",
        "classifiers.verb.weight",
        "classifiers.noun.bias",
    ):
        assert key in keys, key
    assert "backbone.layers.3.downsample.reduction.weight" not in keys
    assert "backbone.layers.0.downsample.reduction.bias" not in keys
    assert all(key.startswith(("backbone.", "classifiers.")) for key in keys)


def test_save_and_reload_are_bit_identical(tmp_path):
    model = tiny_model(**TINY_SHIFTED, heads={"verb": 3, "noun": 4})
    x = clips(2, 4, 3, 32, 32)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    for auto_class in (AutoModel, AutoModelForVideoClassification, VideoSwinForVideoClassification):
        reloaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(reloaded) is VideoSwinForVideoClassification
        assert list(reloaded(x).logits) == ["verb", "noun"]
        with torch.no_grad():
            for head, logits in model(x).logits.items():
                assert torch.equal(reloaded(x).logits[head], logits)
    backbone = VideoSwinModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(backbone(x).pooler_output, model.backbone(x).pooler_output)


def test_checkpoint_without_position_index_still_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny_model(**TINY_SHIFTED)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "relative_position_index" not in k},
              tmp_path / "model.safetensors", metadata={"format": "pt"})
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    x = clips(1, 4, 3, 32, 32)
    with torch.no_grad():  # close, not bit-equal: the shorter file maps the weights at other alignments
        assert torch.allclose(reloaded(x).logits["action"], model(x).logits["action"], atol=1e-6)


def test_from_config_initialises_like_the_original():
    model = AutoModel.from_config(VideoSwinConfig(**TINY))
    table = model.backbone.layers[0].blocks[0].attn.relative_position_bias_table
    assert 0.015 < table.std() < 0.025  # trunc_normal_(std=0.02) with torch's absolute cut-offs (-2, 2)
    conv = model.backbone.patch_embed.proj.weight  # PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert conv.abs().max() <= 1 / (3 * 2 * 4 * 4) ** 0.5
    index = model.backbone.layers[0].blocks[0].attn.relative_position_index
    assert torch.equal(index, relative_position_index((8, 7, 7)))


def test_works_with_trainer_predict(tmp_path):
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    class TinyClips(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return {"pixel_values": clips(4, 3, 32, 32, seed=index), "labels": {"verb": index % 3, "noun": index}}

    def collate(items):
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "labels": {head: torch.tensor([item["labels"][head] for item in items]) for head in ("verb", "noun")},
            "segment_id": [f"clip{index}" for index in range(len(items))],  # ignored by the model
        }

    model = tiny_model(heads={"verb": 3, "noun": 4})
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True,
        remove_unused_columns=False,
    )
    result = Trainer(model=model, args=args, data_collator=collate).predict(TinyClips())
    assert set(result.predictions) == {"verb", "noun"}
    assert result.predictions["verb"].shape == (3, 3) and result.predictions["noun"].shape == (3, 4)
    assert result.label_ids["noun"].tolist() == [0, 1, 2]
    assert result.metrics["test_loss"] > 0


# ------------------------------------------------------------------------------------------------ torchvision


def _torchvision_features(tv_model, video_ncthw):
    head, tv_model.head = tv_model.head, torch.nn.Identity()
    try:
        return tv_model(video_ncthw)
    finally:
        tv_model.head = head


@pytest.mark.parametrize(
    "shape", [(1, 3, 4, 32, 32), (2, 3, 20, 64, 64), (1, 3, 5, 37, 45)], ids=["tiny", "temporal-shift", "odd-sizes"]
)
def test_matches_torchvision_tiny(shape):
    torch.manual_seed(0)
    tv = SwinTransformer3d(
        patch_size=[2, 4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=[8, 7, 7],
        stochastic_depth_prob=0.2, num_classes=10,
    ).eval()
    model = video_swin_from_torchvision(tv, heads={"verb": 4}, normalize_inputs=False).eval()
    video = torch.rand(shape)
    with torch.no_grad():
        expected = _torchvision_features(tv, video)
        ours = model.backbone(video.transpose(1, 2)).pooler_output
    assert (ours - expected).abs().max() < 1e-4


def test_converter_drops_head_and_rejects_unknown_keys():
    tv = SwinTransformer3d(
        patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 3, 3], num_classes=5
    )
    converted = convert_torchvision_swin3d_state_dict(tv.state_dict())
    assert not any(key.startswith("head") for key in converted)
    assert "layers.0.downsample.reduction.weight" in converted and "layers.1.blocks.0.mlp.fc2.weight" in converted
    with pytest.raises(ValueError, match="unexpected torchvision key 'features.9.extra'"):
        convert_torchvision_swin3d_state_dict({"features.9.extra": torch.zeros(1)})


@pytest.mark.slow
def test_matches_torchvision_swin3d_t_at_full_size():
    torch.manual_seed(0)
    tv = swin3d_t(weights=None).eval()
    model = video_swin_from_torchvision(tv, normalize_inputs=False).eval()
    assert sum(p.numel() for p in model.backbone.parameters()) == 27_850_470
    video = torch.rand(1, 3, 16, 224, 224)
    with torch.inference_mode():
        expected = _torchvision_features(tv, video)
        out = model.backbone(video.transpose(1, 2))
    assert out.last_hidden_state.shape == (1, 8, 7, 7, 768)
    assert (out.pooler_output - expected).abs().max() < 1e-4
