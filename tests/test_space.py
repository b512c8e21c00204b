"""The Gradio Space, launched on 127.0.0.1 with a tiny model and driven with ``gradio_client``."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers_hub import NOUNS, REPO_ROOT, VERBS, save_tiny_student, write_blank_clip, write_clip

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def load_space_module():
    spec = importlib.util.spec_from_file_location("mmkd_space_app", REPO_ROOT / "spaces_app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_space(model_dir, examples_dir, **limits):
    """Builds and launches the Space in this process; returns (space module, app, demo, url)."""
    space = load_space_module()
    app = space.SpaceApp(str(model_dir), examples_dir=examples_dir, **limits)
    demo = space.build_demo(app)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=[str(examples_dir)])
    return space, app, demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    model_dir = save_tiny_student(root / "run" / "student")
    space_module, app, demo, url = launch_space(model_dir, root / "examples", max_mb=1, max_seconds=5)
    yield {"module": space_module, "app": app, "url": url, "root": root}
    demo.close()


def test_prediction_on_a_real_clip(space):
    from gradio_client import Client, handle_file

    clip = write_clip(space["root"] / "clip.mp4", num_frames=16, height=64, width=64)
    client = Client(space["url"], verbose=False)
    verbs, nouns, actions, info, t_verbs, t_nouns, t_actions, ensemble_info = client.predict(
        handle_file(str(clip)), "6 views (2 clips x 3 crops)", api_name="/predict")
    assert verbs["label"] in VERBS and nouns["label"] in NOUNS
    assert len(verbs["confidences"]) == 5 and len(actions["confidences"]) == 5
    assert actions["label"].split(" ")[0] in VERBS
    # The Space shows what the pipeline returns.
    expected = space["app"].classifier(str(clip), top_k=5, num_clips=2, num_crops=3)
    assert verbs["label"] == expected["verb"][0]["label"]
    assert verbs["confidences"][0]["confidence"] == pytest.approx(expected["verb"][0]["score"], rel=1e-4)
    assert "views used: 6" in info and " ms end to end" in info
    dtype = str(space["app"].classifier.compute_dtype).removeprefix("torch.")
    assert f"compute dtype {dtype}" in info and " ms per view" in info
    assert f"runs in **{dtype}**" in space["app"].status_text() and "ms per view" in space["app"].status_text()
    assert "Teacher ensemble" in ensemble_info  # no ensemble in this run: the panel says why


def test_bad_uploads_get_clear_messages(space, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(space["url"], verbose=False)

    def error_of(path):
        with pytest.raises(Exception) as info:
            client.predict(handle_file(str(path)), "1 view", api_name="/predict")
        return str(info.value)

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    assert "unsupported file type '.txt'" in error_of(text)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00garbage" * 100)
    assert "could not be read as a video" in error_of(corrupt)
    long_clip = write_clip(tmp_path / "long.mp4", num_frames=60, fps=8)  # 7.5 s > the 5 s limit
    assert "the limit is 5 s" in error_of(long_clip)
    big = write_clip(tmp_path / "big.webm", codec="libvpx", num_frames=8, height=64, width=64)
    with open(big, "ab") as handle:
        handle.write(os.urandom(1_200_000))  # > 1 MB limit
    assert "the limit is 1 MB" in error_of(big)


def test_limits_are_read_from_the_stream_before_decoding(space, tmp_path, monkeypatch):
    import av
    from gradio_client import Client, handle_file

    app, module = space["app"], space["module"]
    calls = []
    classifier = app.classifier
    monkeypatch.setattr(app, "classifier", lambda *a, **k: calls.append(a) or classifier(*a, **k))
    client = Client(space["url"], verbose=False)

    def error_of(path):
        with pytest.raises(Exception) as info:
            client.predict(handle_file(str(path)), "1 view", api_name="/predict")
        return str(info.value)

    # 8192x8192 frames in a ~100 KB file: refused from the stream's frame size, nothing decoded.
    huge = write_blank_clip(tmp_path / "huge.mp4", 8192, 8192)
    assert huge.stat().st_size < 1_000_000
    message = error_of(huge)
    assert "8192x8192 (67,108,864 pixels)" in message and "the limit is 2,073,600 pixels per frame" in message
    # A webm without duration metadata, longer than the limit: its packets' timestamps give it away.
    endless = write_clip(tmp_path / "no-duration.webm", codec="libvpx", num_frames=80, height=32, width=32,
                         container_options={"live": "1"})  # 10 s at 8 fps; the limit is 5 s
    with av.open(str(endless)) as container:
        assert container.duration is None and not container.streams.video[0].duration  # really no metadata
    message = error_of(endless)
    assert "read from its stream" in message and "the limit is 5 s" in message
    assert calls == []  # neither clip reached the pipeline

    # The frame cap counts the stream's packets too; a normal clip passes every check.
    normal = write_clip(tmp_path / "normal.webm", codec="libvpx", num_frames=16, container_options={"live": "1"})
    with pytest.raises(module.ClipError, match="more than 10 frames .*the limit is 10 frames"):
        module.probe_clip(str(normal), max_mb=1, max_seconds=5, max_frames=10)
    probe = module.probe_clip(str(normal), max_mb=1, max_seconds=5)
    assert probe["frames"] == 16 and probe["seconds"] == pytest.approx(2.0) and probe["width"] == 64
    verbs = client.predict(handle_file(str(normal)), "1 view", api_name="/predict")[0]
    assert verbs["label"] in VERBS and len(calls) == 1


def test_fifty_concurrent_clients_complete(space):
    from gradio_client import Client, handle_file

    clip = write_clip(space["root"] / "concurrent.mp4", num_frames=8, height=48, width=48)

    def one_request(_):
        client = Client(space["url"], verbose=False)
        verbs = client.predict(handle_file(str(clip)), "1 view", api_name="/predict")[0]
        return verbs["label"]

    started = time.time()
    with ThreadPoolExecutor(max_workers=50) as pool:
        labels = list(pool.map(one_request, range(50), timeout=300))
    assert len(labels) == 50 and len(set(labels)) == 1 and labels[0] in VERBS
    assert time.time() - started < 300  # bounded: a stuck queue would hit the timeout above first


def test_missing_model_is_reported(tmp_path, monkeypatch):
    space = load_space_module()
    monkeypatch.delenv("MMKD_MODEL", raising=False)
    assert space.default_model_source(tmp_path / "outputs") is None
    app = space.SpaceApp(None, examples_dir=tmp_path / "examples")
    assert "set MMKD_MODEL" in app.load_error
    import gradio as gr

    with pytest.raises(gr.Error, match="set MMKD_MODEL"):
        app.predict(str(tmp_path / "x.mp4"), "1 view")
    # The latest run's student is the default model.
    for name in ("old", "new"):
        (tmp_path / "outputs" / name / "student").mkdir(parents=True)
        (tmp_path / "outputs" / name / "student" / "config.json").write_text("{}")
        time.sleep(0.01)
    assert space.default_model_source(tmp_path / "outputs").endswith(os.path.join("new", "student"))
