"""Item: Qt on a bare Linux. Before any QApplication exists, `python -m explorer` checks that Qt's
xcb platform plugin can load and, if a library is missing, names it and the apt-get line, and exits
non-zero (instead of Qt's abort)."""
from __future__ import annotations

import pytest

from explorer import __main__ as explorer_main


def test_missing_xcb_libraries_give_one_message_with_the_apt_line(monkeypatch, capsys):
    monkeypatch.setattr(explorer_main.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    # what a real Ubuntu desktop lacked, although libxcb-cursor0 was installed
    monkeypatch.setattr(explorer_main, "probe_missing", lambda files: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    created = []
    import pyqtgraph as pg

    monkeypatch.setattr(pg, "mkQApp", lambda *a: created.append(a))
    assert explorer_main.main([]) == 3
    assert not created                                   # no QApplication, so no Qt abort
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in err
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1\n" in err
    assert err.count("apt-get install") == 1


def test_an_unknown_library_is_named_with_how_to_find_its_package():
    msg = explorer_main.xcb_message(["libxcb-cursor.so.0", "libfoo.so.7"])
    assert "apt-get install -y libxcb-cursor0\n" in msg and "libfoo.so.7" in msg and "apt-file search" in msg


def test_ldd_not_found_lines_are_collected_once(monkeypatch, tmp_path):
    lib = tmp_path / "libqxcb.so"
    lib.write_bytes(b"")
    out = ("\tlibxcb-cursor.so.0 => /lib/libxcb-cursor.so.0 (0x1)\n\tlibxcb-icccm.so.4 => not found\n"
           "\tlibxcb-keysyms.so.1 => not found\n\tlibxcb-icccm.so.4 => not found\n")

    class Done:
        stdout = out

    monkeypatch.setattr(explorer_main.shutil, "which", lambda name: "/usr/bin/ldd")
    monkeypatch.setattr(explorer_main.subprocess, "run", lambda *a, **k: Done)
    assert explorer_main.probe_missing([lib, lib]) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


@pytest.mark.parametrize("env, expected", [
    ({"DISPLAY": ":0"}, True), ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
    ({"QT_QPA_PLATFORM": "xcb"}, True), ({"WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, False),
])
def test_the_probe_runs_only_where_qt_would_use_xcb(monkeypatch, env, expected):
    for k in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(explorer_main.sys, "platform", "linux")
    assert explorer_main.uses_xcb() is expected


def test_the_real_plugin_files_are_found_and_probed():
    files = explorer_main.xcb_plugin_files()
    assert any(f.name == "libqxcb.so" for f in files)
    assert isinstance(explorer_main.missing_xcb_libraries(), list)          # never raises
