"""Measured properties of a mini-kitchens generation (``mmkd-hf make-mini-dataset --report``).

Trains one tiny model per modality on the train split, evaluates on validation and prints verb / noun /
action top-1 per modality and for ensembles (mean of log-softmax scores). The claims the dataset must
support: no single modality above 90 % action top-1; RGB-only at least 10 points below the
ensemble of the best modalities. The result is written to ``DIR/report.json`` (and
``DIR/report_<backend>.json``).

Backend ``proxy`` (default, seconds to a minute on one CPU core): plain-torch models on inputs read
straight from the EPIC files: a small 3D CNN on 8 RGB frames (64x64), the same CNN on 8 flow (u, v)
frames, a 2D CNN on the segment's log-mel spectrogram and an MLP on per-frame hand/object box features
(from the hand-object pickles, best-scoring hand and objects). The real teachers (Video Swin / STLT) are
larger; the proxy measures what the data makes learnable from few labels.

Backend ``package`` (minutes): the main job's own networks and schedule (preset ``tiny`` of
``mmkd_hf.distillation.presets``: the RGB student Video Swin, the flow / audio teacher Video Swins, the STLT
layout teacher; 8 frames of 48x48, 24 epochs (the teachers'), AdamW lr 1e-3, batch 16, on 80 % of the train split), fed
through ``mmkd_hf.data.load_dataset("epic-kitchens-100", ...)`` with training-mode sampling and augmentation.
"""

from __future__ import annotations

import csv
import itertools
import math
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio

from mmkd_hf.data import AudioConfig, MultimodalCollator, load_dataset
from mmkd_hf.data.detections import Detections, load_detection_list
from mmkd_hf.data.flow import decode_flow_component
from mmkd_hf.distillation.presets import get_preset, stlt_config_kwargs, video_swin_config_kwargs
from mmkd_hf.models import STLTConfig, STLTForVideoClassification, VideoSwinConfig, VideoSwinForVideoClassification
from mmkd_hf.utils import atomic_write_json

from .scene import NOUNS, VERBS, MiniKitchensConfig
from .writer import read_marker

MODALITIES = ("rgb", "flow", "audio", "layout")
NUM_FRAMES = 16  # frames loaded per segment; models see 8 of them (stride 2, random phase in training)


# --------------------------------------------------------------------------------------------------
# Loading (straight from the EPIC files)
# --------------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    inputs: dict[str, torch.Tensor]
    verb: torch.Tensor
    noun: torch.Tensor
    participant: list[str]
    narration_id: list[str]


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _frame_indices(start: int, stop: int, n: int = NUM_FRAMES) -> np.ndarray:
    return np.rint(np.linspace(start, stop, n)).astype(int)


def _read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read {path}")
    return img


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        sr = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return data, sr


def _log_mel(x: np.ndarray, sr: int, bins: int = 48) -> np.ndarray:
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=512, win_length=400, hop_length=160, n_mels=64)
    spec = mel(torch.from_numpy(x)[None])  # [1, 64, W]
    spec = 10.0 * torch.log10(spec.clamp_min(1e-10))
    spec = F.interpolate(spec[None], size=(64, bins), mode="bilinear", align_corners=False)[0, 0]
    return ((spec + 60.0) / 30.0).numpy()


_BOX_FEATURES = 4 + 1 + 5 + 1 + (4 + 1) * 3  # hand box, score, state one-hot, side, 3 objects (box, score)


def _layout_features(msg: Any) -> np.ndarray:
    feat = np.zeros(_BOX_FEATURES, np.float32)
    hands = sorted(msg.hands, key=lambda h: -h.score)
    if hands and hands[0].score >= 0.3:
        h = hands[0]
        feat[0:4] = (h.bbox.left, h.bbox.top, h.bbox.right, h.bbox.bottom)
        feat[4] = h.score
        feat[5 + int(h.state)] = 1.0
        feat[10] = 1.0 if h.side == 1 else -1.0
    objs = sorted(msg.objects, key=lambda o: -o.score)[:3]
    for j, o in enumerate(objs):
        base = 11 + 5 * j
        feat[base:base + 4] = (o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom)
        feat[base + 4] = o.score
    return feat


def load_split(root: Path, split: str) -> SplitData:
    """Read the 16 uniformly spaced RGB / flow frames, the audio and the detections of every segment."""
    rows = _read_rows(root / f"EPIC_100_{split}.csv")
    fps = {r["video_id"]: float(r["fps"]) for r in _read_rows(root / "EPIC_100_video_info.csv")}
    bound = float(((read_marker(root) or {}).get("config") or {}).get("flow_bound", MiniKitchensConfig.flow_bound))
    wav_cache: dict[str, tuple[np.ndarray, int]] = {}
    det_cache: dict[str, list[bytes]] = {}
    rgb, flow, audio, layout = [], [], [], []
    for r in rows:
        pid, vid = r["participant_id"], r["video_id"]
        idx = _frame_indices(int(r["start_frame"]), int(r["stop_frame"]))
        rgb_dir = root / pid / "rgb_frames" / vid
        frames = [cv2.imread(str(rgb_dir / f"frame_{i:010d}.jpg"))[..., ::-1] for i in idx]
        rgb.append(np.stack(frames).transpose(3, 0, 1, 2).astype(np.float32) / 255.0)
        flow_dir = root / pid / "flow_frames" / vid
        fidx = (idx + 1) // 2
        uv = [np.stack([_read_gray(flow_dir / c / f"frame_{k:010d}.jpg") for c in ("u", "v")]) for k in fidx]
        flow.append(decode_flow_component(np.stack(uv, axis=1), bound) / bound)  # [2, T, H, W], in [-1, 1]
        if vid not in wav_cache:
            wav_cache[vid] = _read_wav(root / pid / "videos" / f"{vid}.wav")
        wav, sr = wav_cache[vid]
        a = int((int(r["start_frame"]) - 1) / fps[vid] * sr)
        b = int(int(r["stop_frame"]) / fps[vid] * sr)
        audio.append(_log_mel(wav[a:b], sr)[None])
        if vid not in det_cache:
            det_cache[vid] = load_detection_list(root / pid / "hand-objects" / f"{vid}.pkl")
        layout.append(np.stack([_layout_features(Detections.FromString(det_cache[vid][i - 1])) for i in idx]))
    return SplitData(
        inputs={
            "rgb": torch.from_numpy(np.stack(rgb)),
            "flow": torch.from_numpy(np.stack(flow).astype(np.float32)),
            "audio": torch.from_numpy(np.stack(audio)),
            "layout": torch.from_numpy(np.stack(layout)),
        },
        verb=torch.tensor([int(r["verb_class"]) for r in rows]),
        noun=torch.tensor([int(r["noun_class"]) for r in rows]),
        participant=[r["participant_id"] for r in rows],
        narration_id=[r["narration_id"] for r in rows],
    )


# --------------------------------------------------------------------------------------------------
# Tiny proxy models
# --------------------------------------------------------------------------------------------------


class Tiny3DCNN(nn.Module):
    """Four 3x3x3 conv layers, then global max + mean pooling (the object is small: mean alone dilutes it)."""

    def __init__(self, in_ch: int, heads: dict[str, int], width: int = 16):
        super().__init__()

        def block(i: int, o: int, stride: Any) -> list[nn.Module]:
            return [nn.Conv3d(i, o, 3, stride=stride, padding=1), nn.BatchNorm3d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_ch, width, (1, 2, 2)), *block(width, 2 * width, (2, 2, 2)),
            *block(2 * width, 2 * width, 1), *block(2 * width, 4 * width, (2, 2, 2)),
        )
        self.drop = nn.Dropout(0.3)
        self.heads = nn.ModuleDict({k: nn.Linear(8 * width, n) for k, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.body(x)
        z = self.drop(torch.cat([z.amax((2, 3, 4)), z.mean((2, 3, 4))], 1))
        return {k: h(z) for k, h in self.heads.items()}


class Tiny2DCNN(nn.Module):
    """Three conv layers on the log-mel image, then global max + mean pooling."""

    def __init__(self, heads: dict[str, int], width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=(1, 2), padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
        )
        self.drop = nn.Dropout(0.3)
        self.heads = nn.ModuleDict({k: nn.Linear(8 * width, n) for k, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.body(x)
        z = self.drop(torch.cat([z.amax((2, 3)), z.mean((2, 3))], 1))
        return {k: h(z) for k, h in self.heads.items()}


class TinyLayoutNet(nn.Module):
    """Per-frame MLP on box features (+ widths/heights), a temporal conv, then a GRU's final state (order)
    with max + mean pooling (a stand-in for STLT)."""

    def __init__(self, heads: dict[str, int], width: int = 64):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(_BOX_FEATURES + 8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.temporal = nn.Sequential(nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
        self.gru = nn.GRU(width, width, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.heads = nn.ModuleDict({k: nn.Linear(3 * width, n) for k, n in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes = torch.stack([x[..., 0:4]] + [x[..., 11 + 5 * j:15 + 5 * j] for j in range(3)], dim=-2)
        wh = (boxes[..., 2:] - boxes[..., :2]).flatten(-2)  # [B, T, 8]
        z = self.frame(torch.cat([x, 4.0 * wh], -1))  # [B, T, C]
        _, h = self.gru(z)
        z = self.temporal(z.transpose(1, 2))
        z = self.drop(torch.cat([h[-1], z.amax(-1), z.mean(-1)], 1))
        return {k: hd(z) for k, hd in self.heads.items()}


def _select_frames(x: torch.Tensor, modality: str, train: bool, gen: torch.Generator) -> torch.Tensor:
    """8 of the 16 loaded frames (stride 2): random phase in training, phase 0 in evaluation."""
    if modality in ("rgb", "flow"):
        phase = int(torch.randint(0, 2, (1,), generator=gen)) if train else 0
        return x[:, :, phase::2]
    return x


def _build(modality: str, heads: dict[str, int]) -> nn.Module:
    if modality == "rgb":
        return Tiny3DCNN(3, heads)
    if modality == "flow":
        return Tiny3DCNN(2, heads)
    if modality == "audio":
        return Tiny2DCNN(heads)
    if modality == "layout":
        return TinyLayoutNet(heads)
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def train_proxy(
    modality: str, train: SplitData, val: SplitData, epochs: int = 40, seed: int = 0, lr: float = 3e-3,
) -> dict[str, torch.Tensor]:
    """Train one proxy model and return its validation logits per head."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    heads = {"verb": len(VERBS), "noun": len(NOUNS)}
    model = _build(modality, heads)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    x_all = train.inputs[modality]
    n = len(x_all)
    steps = epochs * math.ceil(n / 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 32):
            b = perm[i:i + 32]
            out = model(_select_frames(x_all[b], modality, True, gen))
            loss = F.cross_entropy(out["verb"], train.verb[b]) + F.cross_entropy(out["noun"], train.noun[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        outs = [model(_select_frames(val.inputs[modality][i:i + 64], modality, False, gen)) for i in range(0, len(val.verb), 64)]
    return {k: torch.cat([o[k] for o in outs]) for k in heads}


# --------------------------------------------------------------------------------------------------
# Package backend: mmkd_hf's Video Swin / STLT through the EPIC builder and the data pipeline
# --------------------------------------------------------------------------------------------------

PACKAGE_PRESET = "tiny"  # the main job's preset (mmkd_hf.distillation.presets): frames, frame size, architectures
PACKAGE_EPOCHS = 24  # the main job's teacher epochs (every report model trains like a teacher)
_INPUT_KEYS = {"rgb": ("pixel_values",), "flow": ("flow_values",), "audio": ("audio_values",),
               "layout": ("layout_boxes", "layout_categories", "layout_scores", "layout_sides", "layout_states",
                          "layout_mask")}


def _package_dataset(root: Path, split: str, modality: str, cache_dir: Path, train: bool, seed: int):
    preset = get_preset(PACKAGE_PRESET)
    return load_dataset(
        "epic-kitchens-100", root, split, [modality], cache_dir, num_frames=preset.num_frames, train=train,
        sampler="uniform", crop_size=preset.image_size, seed=seed,
        audio=AudioConfig(**{**dict(preset.audio), "output_size": (preset.image_size, preset.image_size)}),
    )


def _package_model(modality: str, heads: dict[str, int]) -> nn.Module:
    """The main job's network for ``modality``: the RGB student (student preset), the flow / audio teachers
    (teacher preset) or the STLT layout teacher."""
    preset = get_preset(PACKAGE_PRESET)
    if modality == "layout":
        return STLTForVideoClassification(STLTConfig(**stlt_config_kwargs(preset, heads)))
    role = "student" if modality == "rgb" else "teacher"
    return VideoSwinForVideoClassification(VideoSwinConfig(**video_swin_config_kwargs(preset, role, modality, heads)))


def train_package(
    modality: str, root: Path, cache_dir: Path, epochs: int = PACKAGE_EPOCHS, seed: int = 0, lr: float = 1e-3,
    train_fraction: float = 0.8,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, list[str]]:
    """Train one main-job network as the pipeline does (training-mode sampling and augmentation, AdamW lr 1e-3,
    weight decay 0.02, 10 % warm-up then linear decay, batch 16) on ``train_fraction`` of the train split (the
    pipeline holds 20 % out for the ensemble weights). Returns validation logits, verb / noun labels and the
    validation segment ids."""
    torch.manual_seed(seed)
    heads = {"verb": len(VERBS), "noun": len(NOUNS)}
    model = _package_model(modality, heads)
    keys = _INPUT_KEYS[modality]
    train = _package_dataset(root, "train", modality, cache_dir, True, seed)
    order = np.random.default_rng(seed).permutation(len(train))[: max(1, int(train_fraction * len(train)))]
    collate = MultimodalCollator()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, order.tolist()), batch_size=16, shuffle=True,
                                         collate_fn=collate, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.02)
    total = epochs * len(loader)
    warm = max(1, int(0.1 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (step + 1) / warm if step < warm else max(0.0, (total - step) / max(total - warm, 1)))
    for _ in range(epochs):
        model.train()
        for batch in loader:
            out = model(**{k: batch[k] for k in keys}, labels={h: batch["labels"][h] for h in heads})
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            sched.step()
    model.eval()
    val = _package_dataset(root, "validation", modality, cache_dir, False, seed)
    logits: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    verb, noun, ids = [], [], []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(val, batch_size=32, collate_fn=collate):
            out = model(**{k: batch[k] for k in keys}).logits
            for h in heads:
                logits[h].append(out[h])
            verb.append(batch["labels"]["verb"])
            noun.append(batch["labels"]["noun"])
            ids += list(batch["segment_id"])
    return {h: torch.cat(v) for h, v in logits.items()}, torch.cat(verb), torch.cat(noun), ids


# --------------------------------------------------------------------------------------------------
# Metrics and report
# --------------------------------------------------------------------------------------------------


def accuracies(logits: dict[str, torch.Tensor], verb: torch.Tensor, noun: torch.Tensor) -> dict[str, float]:
    """Top-1 verb / noun / action (both right; the argmax of the product of softmaxes) in percent."""
    v_ok = logits["verb"].argmax(-1) == verb
    n_ok = logits["noun"].argmax(-1) == noun
    return {
        "verb": round(100.0 * v_ok.float().mean().item(), 2),
        "noun": round(100.0 * n_ok.float().mean().item(), 2),
        "action": round(100.0 * (v_ok & n_ok).float().mean().item(), 2),
    }


def ensemble(logits: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of the members' log-softmax scores per head."""
    return {k: torch.stack([F.log_softmax(l[k], -1) for l in logits]).mean(0) for k in logits[0]}


def run_report(
    root: str | Path, backend: str = "proxy", seed: int = 0, epochs: int | None = None,
    modalities: Sequence[str] = MODALITIES, print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the dataset's properties and write ``root/report.json``. Returns the report dict."""
    if backend not in ("proxy", "package"):
        raise ValueError(f"report backend {backend!r}: expected 'proxy' or 'package'")
    root = Path(root)
    t0 = time.perf_counter()
    per_mod: dict[str, dict[str, torch.Tensor]] = {}
    results: dict[str, dict[str, float]] = {}
    if backend == "proxy":
        epochs = 40 if epochs is None else epochs
        train, val = load_split(root, "train"), load_split(root, "validation")
        train_participants, val_participants = train.participant, val.participant
        val_verb, val_noun, n_train = val.verb, val.noun, len(train.verb)
        load_s = time.perf_counter() - t0
        for m in modalities:
            per_mod[m] = train_proxy(m, train, val, epochs=epochs, seed=seed)
            results[m] = accuracies(per_mod[m], val.verb, val.noun)
            print_fn(f"  {m}: {results[m]}")
    else:
        epochs = PACKAGE_EPOCHS if epochs is None else epochs
        train_participants = sorted({r["participant_id"] for r in _read_rows(root / "EPIC_100_train.csv")})
        n_train = len(_read_rows(root / "EPIC_100_train.csv"))
        load_s = 0.0
        with tempfile.TemporaryDirectory() as cache:
            for m in modalities:
                per_mod[m], val_verb, val_noun, ids = train_package(m, root, Path(cache), epochs=epochs, seed=seed)
                results[m] = accuracies(per_mod[m], val_verb, val_noun)
                print_fn(f"  {m}: {results[m]}")
        val_participants = [sid.split("_")[0] for sid in ids]
    combos = {}
    for r in range(2, len(modalities) + 1):
        for combo in itertools.combinations(modalities, r):
            name = "+".join(combo)
            combos[name] = accuracies(ensemble([per_mod[m] for m in combo]), val_verb, val_noun)
    best_name = max(combos, key=lambda k: (combos[k]["action"], -k.count("+")))
    all_name = "+".join(modalities)
    unseen = torch.tensor([p not in set(train_participants) for p in val_participants])
    report: dict[str, Any] = {
        "backend": backend,
        "train_segments": n_train,
        "validation_segments": len(val_verb),
        "epochs": epochs,
        "modalities": results,
        "ensembles": combos,
        "best_ensemble": best_name,
        "all_modalities_ensemble": all_name,
        "unseen_participants_action": {
            m: accuracies({k: v[unseen] for k, v in per_mod[m].items()}, val_verb[unseen], val_noun[unseen])["action"]
            for m in modalities
        } if unseen.any() else {},
        "seconds": {"load": round(load_s, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    if "rgb" in results:
        best_single = max(results[m]["action"] for m in results)
        gap = combos[best_name]["action"] - results["rgb"]["action"] if combos else 0.0
        report["claims"] = {
            "max_single_modality_action": best_single,
            "no_single_modality_above_90": best_single <= 90.0,
            "rgb_gap_to_best_ensemble": round(gap, 2),
            "rgb_at_least_10_below_best_ensemble": gap >= 10.0,
        }
    atomic_write_json(root / "report.json", report)
    atomic_write_json(root / f"report_{backend}.json", report)
    print_fn(format_report(report))
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"mini-kitchens report ({report['backend']} models; {report['train_segments']} train / "
        f"{report['validation_segments']} validation segments), top-1 % on validation",
        f"{'model':<28}{'verb':>8}{'noun':>8}{'action':>8}",
    ]
    for name, acc in report["modalities"].items():
        lines.append(f"{name:<28}{acc['verb']:>8.1f}{acc['noun']:>8.1f}{acc['action']:>8.1f}")
    keys = [report["all_modalities_ensemble"], report["best_ensemble"]]
    for name in dict.fromkeys(keys):
        if name in report["ensembles"]:
            acc = report["ensembles"][name]
            lines.append(f"{'ens ' + name:<28}{acc['verb']:>8.1f}{acc['noun']:>8.1f}{acc['action']:>8.1f}")
    if "claims" in report:
        c = report["claims"]
        lines.append(
            f"claims: max single-modality action {c['max_single_modality_action']:.1f} (<= 90: "
            f"{c['no_single_modality_above_90']}); RGB {c['rgb_gap_to_best_ensemble']:.1f} points below the best "
            f"ensemble (>= 10: {c['rgb_at_least_10_below_best_ensemble']})"
        )
    return "\n".join(lines)
