"""The wheel carries the card templates (``hub_cards/`` -> ``mmkd_hf/hub/templates``) and an installed (not
editable) copy of the package renders model and dataset cards from them via ``importlib.resources``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = sorted(p.name for p in (REPO_ROOT / "hub_cards").glob("*.md"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel`` of a copy of the sources (so the build leaves nothing in the working tree)."""
    pytest.importorskip("wheel", reason="building a wheel without build isolation needs the `wheel` package")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "hub_cards", source / "hub_cards")
    shutil.copytree(REPO_ROOT / "src", source / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("mmkd_hf-*.whl")
    return path


def test_wheel_holds_the_card_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert TEMPLATES == ["dataset_card_template.md", "model_card_template.md"]
    for name in TEMPLATES:
        member = f"mmkd_hf/hub/templates/{name}"
        assert member in names, member
        assert zipfile.ZipFile(wheel).read(member) == (REPO_ROOT / "hub_cards" / name).read_bytes()


def test_installed_wheel_renders_cards_from_its_own_templates(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install <wheel>` puts in site-packages
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "video_swin", "modality": "rgb", '
                                           '"heads": {"verb": 3, "noun": 4}}')
    code = f"""
import sys
sys.path.insert(0, {str(site)!r})
import mmkd_hf.hub.cards as cards
location = str(cards.TEMPLATE_DIR)
assert location.startswith({str(site)!r}) and cards.__file__.startswith({str(site)!r}), (location, cards.__file__)
model = cards.render_model_card("student", {str(model_dir)!r}, None, dataset="epic-kitchens-100")
dataset = cards.render_dataset_card("epic-kitchens-100", repo_id="alice/epic", splits={{"train": 3}})
assert "Not evaluated" in model.text, model.text[:500]
assert "| train | 3 |" in dataset.text and "Damen" in dataset.text
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    # `-S` keeps the editable install of the working tree out of sys.path: only the unpacked wheel is importable
    # as mmkd_hf; the dependencies come from the environment's site-packages, added after it.
    import site as site_module

    packages = [p for p in site_module.getsitepackages() if Path(p).is_dir()]
    code = f"import sys; sys.path.extend({packages!r})\n" + code
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
