"""Screenshots of guidance (issue #22): the Score-field tab with the tilted target under the guided field,
and the lab's w axis. Regenerate the committed ones with
    EXPLORER_SCREENSHOTS=docs/screenshots QT_QPA_PLATFORM=offscreen python -m pytest -q tests/explorer -k guidance_screenshots
"""
from __future__ import annotations

from trainers import densities


def test_guidance_screenshots_of_the_tilted_target_and_the_w_axis(screenshot_window, screenshot_dir, check_screenshots,
                                                                   qtbot):
    win = screenshot_window
    win.state.set_density(densities.preset("three_classes"))
    sv = win.views["score"]
    win.tabs.setCurrentWidget(sv)
    sv.guide_w.setValue(3.0)
    sv.guide_class.setCurrentIndex(sv.guide_class.findData(1))
    sv.show_tilted.setChecked(True)
    sv.set_level(0)
    hover = sv.show_vectors_at(2.5, 1.5)
    assert sv.tilted_img.isVisible() and "exact guided" in hover
    lv = win.views["lab"]
    win.tabs.setCurrentWidget(lv)
    for name, cb in lv.sampler_boxes.items():
        cb.setChecked(name in ("ddim", "pf-ode"))
    lv.n.setValue(300)
    lv.seeds.setValue(2)
    lv.guide_ws.setText("0, 1, 4")
    lv.guide_class.setCurrentIndex(lv.guide_class.findData(1))
    lv.run_guidance()
    qtbot.waitUntil(lambda: lv.guide_box.isVisible(), timeout=60000)
    paths = [win.save_screenshot(str(screenshot_dir / "guidance_tilted.png"), "score"),
             win.save_screenshot(str(screenshot_dir / "guidance_w_axis.png"), "lab")]
    check_screenshots(paths)
