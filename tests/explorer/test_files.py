"""Files: density JSON (good and malformed), exports, sessions."""
from __future__ import annotations

import torch
from PIL import Image
from PySide6 import QtWidgets


def test_malformed_density_json_shows_an_error_and_keeps_the_density(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", lambda *a, **k: shown.append(a))
    before = window.state.density
    bad = tmp_path / "bad.json"
    for text in ('{"kind": "gmm", "components": [', '{"kind": "gmm", "components": [{"weight": 1, "mean": [0],'
                 ' "cov": [[1, 0], [0, 1]]}]}', '[1, 2, 3]'):
        bad.write_text(text)
        assert window.views["density"].load_json(str(bad)) is False
        assert window.state.density is before
    assert len(shown) == 3
    assert "bad.json" in shown[0][2] and "unchanged" in shown[0][2]


def test_density_json_round_trip(window, tmp_path):
    view = window.views["density"]
    path = tmp_path / "d.json"
    assert view.save_json(str(path))
    view.load_preset("rings")
    assert view.load_json(str(path))
    assert window.state.density.name == "eight_gaussians"


def test_export_png_svg_and_gif_are_valid_files(window, tmp_path):
    window.tabs.setCurrentWidget(window.views["score"])
    png = window.export_view(str(tmp_path / "view.png"))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200
    svg = window.export_view(str(tmp_path / "view.svg"), fmt="svg")
    assert "<svg" in (tmp_path / "view.svg").read_text()[:2000]
    assert svg
    sp = window.views["sampler"]
    for c in sp.controls:
        c.source.setCurrentIndex(c.source.findData("exact"))
    gif = window.export_gif(str(tmp_path / "chains.gif"), max_frames=8)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 8
        im.seek(im.n_frames - 1)


def test_session_save_and_restore_round_trip(window, qtbot, tmp_path):
    tv = window.views["training"]
    window.state.update_train(objective="dsm")
    tv.start(max_steps=30)
    qtbot.waitUntil(lambda: not tv.is_running() and window.state.model is not None, timeout=20000)
    weights = {k: v.clone() for k, v in window.state.model.state_dict().items()}
    density = window.state.density.to_dict()
    window.views["sampler"].set_panel(2, "langevin", "exact", eps=0.0123)
    path = window.save_session(str(tmp_path / "s.pt"))
    assert path

    window.views["density"].load_preset("spiral")
    tv.reset()
    window.state.update_train(objective="ssm", width=32)
    assert window.state.model is None

    assert window.load_session(path)
    s = window.state
    assert s.density.to_dict() == density
    assert s.train.objective == "dsm" and s.train.width == 64
    assert s.sampler.panels[2] == {"sampler": "langevin", "source": "exact", "options": {"steps": 300, "eps": 0.0123, "nfe": None}}
    assert window.views["sampler"].controls[2].widgets["eps"].value() == 0.0123
    assert window.views["sampler"].worker.chains[2].spec.sampler.eps == 0.0123
    assert tv.objective.currentData() == "dsm"
    for k, v in s.model.state_dict().items():
        assert torch.equal(v, weights[k])
    # the file holds only tensors and plain values: it loads with weights_only=True
    torch.load(path, weights_only=True)


def test_a_corrupt_session_file_shows_an_error_and_changes_nothing(window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "critical", lambda *a, **k: shown.append(a))
    before = window.state.density
    bad = tmp_path / "s.pt"
    bad.write_bytes(b"not a torch file")
    assert window.load_session(str(bad)) is False
    torch.save({"format": "score-explorer-session", "density": {"kind": "nope"}}, bad)
    assert window.load_session(str(bad)) is False
    assert window.state.density is before and len(shown) == 2


def test_a_session_file_from_before_the_sampler_panels_still_opens(window, tmp_path):
    """Old files hold TrainSettings fields for training and Langevin/annealed/DDPM fields for sampling."""
    old = {"format": "score-explorer-session", "version": 1, "density": window.state.density.to_dict(),
           "train": {"model": "mlp", "objective": "dsm", "width": 32, "depth": 2, "lr": 1e-3, "batch": 256,
                     "sigma": 0.4, "sigma_max": 5.0, "sigma_min": 0.05, "n_levels": 8, "schedule": "linear",
                     "n_timesteps": 100, "seed": 0},
           "sampler": {"n_particles": 300, "source": "exact", "langevin_eps": 0.02, "langevin_steps": 30,
                       "annealed_eps": 1e-3, "steps_per_level": 5, "n_levels": 4, "frames": 20,
                       "chains": ["langevin", "ddpm"]},
           "model_settings": None, "model_step": 0, "model_state": None}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    assert window.load_session(str(path))
    s = window.state
    assert s.train.objective == "dsm" and s.train.width == 32 and s.train.sigma == 0.4 and not s.train.lr_decay
    assert [p["sampler"] for p in s.sampler.panels[:s.sampler.n_panels]] == ["langevin", "ddpm"]
    assert s.sampler.panels[0]["options"]["eps"] == 0.02 and s.sampler.panels[0]["source"] == "exact"
    assert len(window.views["sampler"].worker.chains) == 2
