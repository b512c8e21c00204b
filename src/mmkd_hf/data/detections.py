"""EPIC-KITCHENS-100 hand-object detections: safe reading, writing and conversion to layout tensors.

Official format (``<P>/hand-objects/<video>.pkl``): a pickled Python list of ``bytes``; element ``k`` is
a serialised protobuf ``model.detections.Detections`` message for RGB frame ``k + 1`` (schema in
``hand_object_detections.proto``; boxes are fractions of the frame width/height).

Pickles can run code, so :func:`load_detection_list` uses an unpickler whose ``find_class`` always
raises: only built-in containers/bytes can be produced, and the result must be a list of bytes.
The protobuf classes are built at runtime from a descriptor in a private pool (no protoc needed).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..utils import atomic_path
from .errors import FileDecodeError

__all__ = [
    "Detections",
    "HandDetection",
    "ObjectDetection",
    "DetectionThresholds",
    "load_detection_list",
    "load_video_detections",
    "write_video_detections",
    "frame_layout",
    "check_boxes",
    "refused_box_count",
    "BOX_TOLERANCE",
    "CATEGORY_OBJECT",
    "CATEGORY_HAND",
]

CATEGORY_PAD, CATEGORY_OBJECT, CATEGORY_HAND = 0, 1, 2

#: How far (a fraction of the frame's width or height) a box corner may lie outside the frame and still be clipped
#: into it; a box beyond, or with a non-finite corner or score, is refused (dropped, counted and warned about).
BOX_TOLERANCE = 0.05

logger = logging.getLogger(__name__)
_refused = {"boxes": 0}
_warned: set[str] = set()
_MAX_WARNINGS = 20  # per process: one warning per video and frame, then a last one saying more are hidden


def refused_box_count() -> int:
    """Boxes refused by :func:`check_boxes` in this process (DataLoader workers count their own)."""
    return _refused["boxes"]


def check_boxes(boxes: np.ndarray, scores: np.ndarray | None = None, *, where: str,
                tolerance: float = BOX_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Make boxes safe for the layout teacher: finite and inside the frame.

    Args:
        boxes: ``[n, 4]`` corners (x1, y1, x2, y2) as fractions of the frame.
        scores: ``[n]`` detection scores, or None.
        where: the video and frame, named in the warning.
        tolerance: corners up to this far outside ``[0, 1]`` are clipped into it.

    Returns:
        (boxes clipped to ``[0, 1]`` with non-finite values replaced by 0, bool mask of the boxes kept). A box with a
        NaN or infinite corner or score, or a corner beyond the tolerance, is refused: left out of the mask,
        counted (:func:`refused_box_count`) and named in one warning.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(b).all(axis=1)
    if scores is not None:
        finite &= np.isfinite(np.asarray(scores, dtype=np.float64).reshape(-1))
    with np.errstate(invalid="ignore"):
        inside = ((b >= -tolerance) & (b <= 1.0 + tolerance)).all(axis=1)
    keep = finite & inside
    refused = int((~keep).sum())
    if refused:
        _refused["boxes"] += refused
        reasons = []
        if (~finite).any():
            reasons.append(f"{int((~finite).sum())} with a NaN or infinite corner or score")
        if (finite & ~inside).any():
            reasons.append(f"{int((finite & ~inside).sum())} more than {tolerance:.0%} outside the frame")
        if where not in _warned and len(_warned) < _MAX_WARNINGS:
            _warned.add(where)
            hidden = " (further refused boxes are counted, not logged)" if len(_warned) == _MAX_WARNINGS else ""
            logger.warning("%s: %d box(es) refused: %s%s", where, refused, ", ".join(reasons), hidden)
    clipped = np.clip(np.nan_to_num(b, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return clipped, keep


def _build_message_classes() -> dict[str, type]:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="mmkd_hf/hand_object_detections.proto",
                                             package="model.detections", syntax="proto3")

    def enum(name: str, values: list[str]) -> None:
        e = fdp.enum_type.add(name=name)
        for number, value in enumerate(values):
            e.value.add(name=value, number=number)

    def message(name: str, fields: list[tuple[str, int, int, str | None, bool]]) -> None:
        m = fdp.message_type.add(name=name)
        for field_name, number, field_type, type_name, repeated in fields:
            f = m.field.add(name=field_name, number=number, type=field_type,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = f".model.detections.{type_name}"

    enum("HandState", ["NO_CONTACT", "SELF_CONTACT", "ANOTHER_PERSON", "PORTABLE_OBJECT", "STATIONARY_OBJECT"])
    enum("HandSide", ["LEFT", "RIGHT"])
    message("FloatVector", [("x", 1, F.TYPE_FLOAT, None, False), ("y", 2, F.TYPE_FLOAT, None, False)])
    message("BBox", [(n, i + 1, F.TYPE_FLOAT, None, False) for i, n in enumerate(["left", "top", "right", "bottom"])])
    message("HandDetection", [
        ("bbox", 1, F.TYPE_MESSAGE, "BBox", False),
        ("score", 2, F.TYPE_FLOAT, None, False),
        ("state", 3, F.TYPE_ENUM, "HandState", False),
        ("object_offset", 4, F.TYPE_MESSAGE, "FloatVector", False),
        ("side", 5, F.TYPE_ENUM, "HandSide", False),
    ])
    message("ObjectDetection", [("bbox", 1, F.TYPE_MESSAGE, "BBox", False), ("score", 2, F.TYPE_FLOAT, None, False)])
    message("Detections", [
        ("video_id", 1, F.TYPE_STRING, None, False),
        ("frame_number", 2, F.TYPE_INT32, None, False),
        ("hands", 3, F.TYPE_MESSAGE, "HandDetection", True),
        ("objects", 4, F.TYPE_MESSAGE, "ObjectDetection", True),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    names = ["FloatVector", "BBox", "HandDetection", "ObjectDetection", "Detections"]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"model.detections.{n}")) for n in names}


_CLASSES = _build_message_classes()
Detections = _CLASSES["Detections"]
HandDetection = _CLASSES["HandDetection"]
ObjectDetection = _CLASSES["ObjectDetection"]
BBox = _CLASSES["BBox"]
FloatVector = _CLASSES["FloatVector"]


class _BytesListUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global (class/function) lookup."""

    def find_class(self, module: str, name: str):  # noqa: D401
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (expected a list of bytes)")


def load_detection_list(path: str | os.PathLike) -> list[bytes]:
    """Read an official ``hand-objects/<video>.pkl`` safely; returns the list of serialised messages."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileDecodeError(path, "hand-object detections file not found") from None
    try:
        obj = _BytesListUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # corrupt/truncated pickle or a forbidden global
        raise FileDecodeError(path, f"not a pickled list of bytes ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, list) or not all(isinstance(x, (bytes, bytearray)) for x in obj):
        raise FileDecodeError(path, f"expected a pickled list of bytes, got {type(obj).__name__}")
    return [bytes(x) for x in obj]


@functools.lru_cache(maxsize=8)
def _cached_detection_list(path: str, mtime_ns: int) -> tuple[bytes, ...]:
    return tuple(load_detection_list(path))


def load_video_detections(path: str | os.PathLike) -> tuple[bytes, ...]:
    """Cached (per process, 8 videos) version of :func:`load_detection_list`."""
    path = str(path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise FileDecodeError(path, "hand-object detections file not found") from None
    return _cached_detection_list(path, mtime)


def write_video_detections(path: str | os.PathLike, frames: list) -> None:
    """Write ``frames`` (``Detections`` messages, one per RGB frame) in the official pickle format."""
    payload = [m.SerializeToString() if not isinstance(m, (bytes, bytearray)) else bytes(m) for m in frames]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=4)


@dataclass(frozen=True)
class DetectionThresholds:
    """Score thresholds (the official files keep hands >= 0.1 and objects >= 0.01)."""

    hand: float = 0.5
    object: float = 0.5


def frame_layout(
    serialized: bytes | None, thresholds: DetectionThresholds, path: str | os.PathLike = "<detections>",
    frame_number: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode one frame's message into box arrays (unpadded, unsorted).

    Boxes are checked with :func:`check_boxes`: a NaN or infinite corner or score, or a corner more than
    :data:`BOX_TOLERANCE` outside the frame, refuses the box (dropped, counted, a warning naming the file and the
    frame); the others are clipped to [0, 1] and swapped when left > right or top > bottom; degenerate boxes are
    dropped later (zero area inside the crop).

    Returns:
        dict with ``boxes`` float32 [n, 4] (x1, y1, x2, y2 as fractions), ``categories`` int64 [n]
        (1 object, 2 hand), ``scores`` float32 [n], ``sides`` int64 [n] (1 left, 2 right, 0 objects),
        ``states`` int64 [n] (stored state + 1 for hands, 0 objects).
    """
    rows: list[tuple[float, float, float, float, int, float, int, int]] = []
    if serialized:
        message = Detections()
        try:
            message.ParseFromString(serialized)
        except Exception as exc:
            raise FileDecodeError(path, f"corrupt Detections message ({exc})") from None
        # a non-finite score is refused below, not silently dropped by the threshold
        for hand in message.hands:
            if hand.score >= thresholds.hand or not np.isfinite(hand.score):
                b = hand.bbox
                rows.append((b.left, b.top, b.right, b.bottom, CATEGORY_HAND, hand.score, int(hand.side) + 1,
                             int(hand.state) + 1))
        for obj in message.objects:
            if obj.score >= thresholds.object or not np.isfinite(obj.score):
                b = obj.bbox
                rows.append((b.left, b.top, b.right, b.bottom, CATEGORY_OBJECT, obj.score, 0, 0))
    if not rows:
        return {
            "boxes": np.zeros((0, 4), np.float32), "categories": np.zeros(0, np.int64),
            "scores": np.zeros(0, np.float32), "sides": np.zeros(0, np.int64), "states": np.zeros(0, np.int64),
        }
    arr = np.asarray(rows, dtype=np.float64)
    frame = frame_number if frame_number is not None else (message.frame_number or "?")
    box, keep = check_boxes(arr[:, :4], arr[:, 5], where=f"{path} (video {message.video_id or '?'}, frame {frame})")
    arr, box = arr[keep], box[keep]
    box = np.stack([np.minimum(box[:, 0], box[:, 2]), np.minimum(box[:, 1], box[:, 3]),
                    np.maximum(box[:, 0], box[:, 2]), np.maximum(box[:, 1], box[:, 3])], axis=1)  # x1 > x2: swap
    return {
        "boxes": box.astype(np.float32),
        "categories": arr[:, 4].astype(np.int64),
        "scores": arr[:, 5].astype(np.float32),
        "sides": arr[:, 6].astype(np.int64),
        "states": arr[:, 7].astype(np.int64),
    }
