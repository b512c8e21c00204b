"""End-to-end evaluation with a tiny Video Swin on a small synthetic dataset: outputs, exports, views."""

from __future__ import annotations

import json
import zipfile

import datasets
import numpy as np
import pytest
import torch

from mmkd_hf.evaluation.exports import read_epic_results, read_predictions_parquet
from mmkd_hf.evaluation.metrics import epic_action_recognition_metrics
from mmkd_hf.evaluation.multiview import reduce_views
from mmkd_hf.evaluation.run import dataset_heads, evaluate_model, model_inputs
from mmkd_hf.evaluation.views import evaluate_views_grid

NUM_VERBS, NUM_NOUNS, FRAMES, SIZE = 5, 6, 4, 32


def tiny_model(heads=None):
    from mmkd_hf import VideoSwinConfig, VideoSwinForVideoClassification

    torch.manual_seed(0)
    config = VideoSwinConfig(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 2, 2), num_frames=FRAMES,
        image_size=SIZE, drop_path_rate=0.0, heads=heads or {"verb": NUM_VERBS, "noun": NUM_NOUNS},
    )
    return VideoSwinForVideoClassification(config).eval()


def synthetic_dataset(num_videos=10, clips=1, crops=1):
    """An Arrow dataset with EPIC-like metadata and a transform producing batch-contract items."""
    rng = np.random.default_rng(0)
    features = datasets.Features({
        "segment_id": datasets.Value("string"),
        "participant_id": datasets.Value("string"),
        "verb_class": datasets.ClassLabel(num_classes=NUM_VERBS),
        "noun_class": datasets.ClassLabel(num_classes=NUM_NOUNS),
        "tail_verb": datasets.Value("bool"),
        "tail_noun": datasets.Value("bool"),
        "unseen_participant": datasets.Value("bool"),
    })
    verbs, nouns = rng.integers(0, NUM_VERBS, num_videos), rng.integers(0, NUM_NOUNS, num_videos)
    table = datasets.Dataset.from_dict({
        "segment_id": [f"P0{i % 3}_01_{i}" for i in range(num_videos)],
        "participant_id": [f"P0{i % 3}" for i in range(num_videos)],
        "verb_class": verbs.tolist(),
        "noun_class": nouns.tolist(),
        "tail_verb": (verbs == 4).tolist(),
        "tail_noun": (nouns >= 4).tolist(),
        "unseen_participant": [i % 3 == 2 for i in range(num_videos)],
    }, features=features)

    def transform(batch):
        out = {"pixel_values": [], "labels": [], "segment_id": []}
        for sid, verb, noun in zip(batch["segment_id"], batch["verb_class"], batch["noun_class"]):
            generator = torch.Generator().manual_seed(int(sid.split("_")[-1]))
            out["pixel_values"].append(torch.rand(clips * crops, FRAMES, 3, SIZE, SIZE, generator=generator))
            out["labels"].append({"verb": verb, "noun": noun})
            out["segment_id"].append(sid)
        return out

    return table.with_transform(transform)


def test_model_inputs_routes_the_batch():
    model = tiny_model()
    batch = {"pixel_values": torch.zeros(1), "flow_values": torch.ones(1), "labels": {}, "segment_id": ["a"]}
    assert list(model_inputs(model, batch)) == ["pixel_values"]
    with pytest.raises(ValueError, match="pixel_values"):
        model_inputs(model, {"flow_values": torch.ones(1)})


def test_evaluate_model_writes_every_output(tmp_path):
    model = tiny_model()
    dataset = synthetic_dataset(10, clips=2, crops=1)
    assert dataset_heads(dataset) == {"verb": NUM_VERBS, "noun": NUM_NOUNS}
    result = evaluate_model(model, dataset, 2, 1, batch_size=4, output_dir=tmp_path, temperature_holdout=0.5,
                            teacher=tiny_model())

    # independent recomputation from the model outputs
    with torch.no_grad():
        pixel = torch.stack([dataset[i]["pixel_values"] for i in range(10)])
        logits = reduce_views(model(pixel_values=pixel).logits)
    verbs = np.array(dataset.with_format(None)["verb_class"])
    nouns = np.array(dataset.with_format(None)["noun_class"])
    expected_verb_top1 = 100 * np.mean(logits["verb"].argmax(-1).numpy() == verbs)
    assert result["heads"]["verb"]["top1"] == pytest.approx(expected_verb_top1)
    expected = epic_action_recognition_metrics(
        logits["verb"], logits["noun"], verbs, nouns, tail_verb_mask=verbs == 4, tail_noun_mask=nouns >= 4,
        unseen_mask=[i % 3 == 2 for i in range(10)],
    )
    assert result["epic"] == pytest.approx(expected, nan_ok=True)
    assert result["num_samples"] == 10 and result["views"]["num_views"] == 2
    assert result["distillation"]["verb"]["top1_agreement"] == 100.0  # same weights
    assert result["distillation"]["verb"]["mean_kl_teacher_student"] == pytest.approx(0.0, abs=1e-6)
    assert set(result["temperature_scaling"]) >= {"verb", "noun"}

    ids, scores, labels = read_predictions_parquet(tmp_path / "predictions.parquet")
    assert ids == [f"P0{i % 3}_01_{i}" for i in range(10)]
    np.testing.assert_allclose(scores["noun"], logits["noun"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels["verb"], verbs)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["heads"]["noun"]["top1"] == pytest.approx(result["heads"]["noun"]["top1"])
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    exported = read_epic_results(tmp_path / "epic_results.pt")
    assert list(exported["narration_id"]) == ids and exported["verb_output"].shape == (10, NUM_VERBS)
    submission = json.loads(zipfile.ZipFile(tmp_path / "epic_submission.zip").read("test.json"))
    assert (submission["version"], submission["challenge"]) == ("0.2", "action_recognition")
    assert (submission["sls_pt"], submission["sls_tl"], submission["sls_td"]) == (2, 3, 4)
    assert len(submission["results"][ids[0]]["noun"]) == NUM_NOUNS


def test_subset_and_class_count_mismatch():
    model = tiny_model()
    subset = torch.utils.data.Subset(synthetic_dataset(6), [5, 1, 3])
    result = evaluate_model(model, subset, batch_size=2)
    assert result["num_samples"] == 3
    wrong = tiny_model({"verb": NUM_VERBS + 1, "noun": NUM_NOUNS})
    with pytest.raises(ValueError, match=f"expected {NUM_VERBS} classes"):
        evaluate_model(wrong, synthetic_dataset(4), batch_size=2)
    with pytest.raises(ValueError, match="views per video"):
        evaluate_model(model, synthetic_dataset(2), 2, 3, batch_size=2)


def test_views_grid_report(tmp_path):
    model = tiny_model()
    rows = evaluate_views_grid(model, lambda clips, crops: synthetic_dataset(4, clips, crops), [(1, 1), (2, 1)],
                               output_dir=tmp_path, batch_size=4)
    assert [row["views"] for row in rows] == [1, 2]
    assert "2 (2×1)" in (tmp_path / "views_vs_accuracy.md").read_text()
    assert (tmp_path / "views_vs_accuracy.png").is_file()
