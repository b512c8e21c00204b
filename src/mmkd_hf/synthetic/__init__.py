"""The mini-kitchens generator: a small synthetic egocentric dataset in the EPIC-KITCHENS-100 layout.

Generation is explicit (``mmkd-hf make-mini-dataset --out DIR``, or train.py's prepare stage, both through
:func:`ensure_mini_kitchens`); ``mmkd_hf.data.load_dataset("mini-kitchens", data_dir=DIR)`` only reads ``DIR``.

Content. Short clips of a hand manipulating an object: noun = object class = shape x colour, verb = what the
hand does (take, put, push, pull, open, close, shake, stir). Four participants differ in background, handedness,
room noise and in how often each nuisance occurs; one of them appears only in validation ("unseen"). Static cues
give the verb *pair* (a pale lid only for open/close, a pale spoon for stir, the object raised and jittering for
shake; a large work surface under the object matches the verb pair in 85 % of the clips), the temporal direction
tells the verbs of a pair apart (up/down, right/left with the hand behind or leading, lid off/on; a fading motion
smear trails moving objects): subtle in RGB from few labels, plain in flow and boxes.

About 60 % of the clips are "clean"; each of the others has one nuisance that hides the RGB cues of a different
subset, resolved by another modality:

* ``low_light`` (10-16 %): dark, noisy, washed-out colours: RGB loses noun and motion; optical flow (computed on
  the camera's linear frames, before the low-light gain and noise) still shows the motion, boxes and audio are
  unaffected;
* ``occlusion`` (~13 %): a large distractor in front of the object for most of the clip: RGB and flow lose the
  object; audio (verb sounds, the object's hum) and boxes resolve it;
* ``shake`` (~12 %): heavy camera shake with motion blur: RGB and flow are swamped by camera motion; boxes
  (hand-object trajectories, contact) and audio resolve it.

Modules, one job each: :mod:`.scene` (label spaces, participants, clip parameters, motion), :mod:`.render` (RGB
frames), :mod:`.audio`, :mod:`.detections` (hand-object boxes), :mod:`.writer` (the EPIC-format folder, its
``.complete`` marker, :func:`ensure_mini_kitchens`), :mod:`.something_something_v2` (the SSv2 / Something-Else
export), :mod:`.report` (what each modality makes learnable), :mod:`.make_dataset` (the command).
"""

from .scene import NOUNS, VERBS, MiniKitchensConfig
from .something_something_v2 import export_ssv2
from .writer import (
    COMPLETE_MARKER,
    FORMAT_VERSION,
    MINI_KITCHENS_SCALES,
    ensure_mini_kitchens,
    fingerprint_digest,
    generate_mini_kitchens,
    generation_request,
    read_marker,
)

__all__ = [
    "ensure_mini_kitchens",
    "generate_mini_kitchens",
    "generation_request",
    "read_marker",
    "fingerprint_digest",
    "export_ssv2",
    "MiniKitchensConfig",
    "MINI_KITCHENS_SCALES",
    "FORMAT_VERSION",
    "COMPLETE_MARKER",
    "VERBS",
    "NOUNS",
]
