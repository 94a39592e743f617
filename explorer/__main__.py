"""python -m explorer [--density NAME|FILE.json] [--demo] [--screenshot OUT.png] [--headless]

Opens the Score Explorer window on the default density. With --demo it trains a few hundred steps
and runs the samplers (and, for the lab tab, a small lab; for the experiments tab, one fast
experiment; for the learned tab, the learned density); with --screenshot it saves the window to
OUT.png and exits (no display needed: Qt's offscreen platform is selected automatically when there is no DISPLAY). --headless is
--demo --screenshot explorer_demo.png for machines without a screen.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Debian/Ubuntu package of each shared library Qt's xcb platform plugin (libqxcb.so and
# libQt6XcbQpa) links to. Ubuntu 24.04 renamed a few with a "t64" suffix; apt-get resolves the old
# names to them.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0", "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xinput.so.0": "libxcb-xinput0", "libxcb-glx.so.0": "libxcb-glx0", "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6", "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6", "libSM.so.6": "libsm6", "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0", "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0", "libpng16.so.16": "libpng16-16", "libz.so.1": "zlib1g",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m explorer", description=__doc__.split("\n\n")[1])
    ap.add_argument("--density", default=None, help="preset name or density JSON (default: the built-in default)")
    ap.add_argument("--demo", action="store_true", help="train a few hundred steps and run the samplers")
    ap.add_argument("--steps", type=int, default=400, help="training steps for --demo (default 400)")
    ap.add_argument("--screenshot", metavar="OUT.png", help="save a screenshot of the window and exit")
    ap.add_argument("--tab", default="sampler", choices=["density", "training", "score", "sampler", "lab", "image_runs",
                                                          "experiments", "learned", "history"],
                    type=lambda name: {"trainer": "image_runs"}.get(name, name),    # the former key
                    help="tab shown in the screenshot (default: sampler; trainer: image_runs' former name)")
    ap.add_argument("--all-tabs", action="store_true",
                    help="with --screenshot: also save OUT-<tab>.png for every tab")
    ap.add_argument("--headless", action="store_true",
                    help="no window: --demo --screenshot explorer_demo.png (unless --screenshot is given)")
    args = ap.parse_args(argv)
    if args.headless:
        args.demo, args.screenshot = True, args.screenshot or "explorer_demo.png"

    from .app import offscreen_if_headless

    if args.screenshot:
        offscreen_if_headless()
    elif sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                   or os.environ.get("QT_QPA_PLATFORM")):
        print("python -m explorer: no display (DISPLAY and WAYLAND_DISPLAY are unset), so no window can open. "
              "Without a screen use --headless (or --demo --screenshot OUT.png), or the command-line tools "
              "python -m trainers.toy and python -m trainers.image.", file=sys.stderr)
        return 2
    elif uses_xcb():
        missing = missing_xcb_libraries()
        if missing:
            print(xcb_message(missing), file=sys.stderr)
            return 3
    from trainers import densities

    try:
        density = densities.load_density(args.density) if args.density else densities.preset(densities.DEFAULT_DENSITY)
    except densities.DensityError as e:
        ap.error(str(e))

    import pyqtgraph as pg
    from .app import MainWindow
    from .state import AppState

    install_qt_message_filter()
    app = pg.mkQApp("Score Explorer")
    win = MainWindow(AppState(density))
    win.show()
    if args.demo:
        from .views.experiments import DEMO_EXPERIMENT

        win.run_demo(train_steps=args.steps, lab=args.tab == "lab" or args.all_tabs,
                     experiment=DEMO_EXPERIMENT if args.tab == "experiments" or args.all_tabs else None,
                     learned=args.tab == "learned" or args.all_tabs)
    if args.screenshot:
        out = win.save_screenshot(args.screenshot, args.tab)
        print(f"saved {out}")
        if args.all_tabs:
            root, ext = os.path.splitext(args.screenshot)
            for key in win.views:
                print("saved", win.save_screenshot(f"{root}-{key}{ext or '.png'}", key))
        win.ask_save_choice = lambda: "discard"      # a screenshot run asks nobody about its demo model
        win.close()
        app.processEvents()
        sys.stdout.flush()
        # PySide6 can crash while the interpreter tears its objects down; the files are written,
        # so leave without that teardown.
        os._exit(0)
    return app.exec()


# ---------------------------------------------------------------------------- Qt's messages
# Qt messages that say nothing to a user: the offscreen platform cannot resize a native window to a
# widget's size hints, and says so every time a window is shown (screenshots, --headless).
DROPPED_QT_MESSAGES = ("This plugin does not support propagateSizeHints()",)


def install_qt_message_filter():
    """Drop exactly the messages in DROPPED_QT_MESSAGES; pass every other Qt message on to the handler
    installed before (Qt's own: stderr). Returns the filter (it stays installed)."""
    from PySide6 import QtCore

    previous = None

    def handler(mode, context, message):
        if message in DROPPED_QT_MESSAGES:
            return
        if previous is not None:
            previous(mode, context, message)
        else:
            sys.stderr.write(message + "\n")

    previous = QtCore.qInstallMessageHandler(handler)
    return handler


# ---------------------------------------------------------------------------- Qt on a bare Linux
def uses_xcb() -> bool:
    """Qt would open the window through its xcb (X11) platform plugin."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0] == "xcb"
    wayland = os.environ.get("WAYLAND_DISPLAY") and os.environ.get("XDG_SESSION_TYPE") == "wayland"
    return bool(os.environ.get("DISPLAY")) and not wayland


def xcb_plugin_files() -> list[Path]:
    """libqxcb.so and libQt6XcbQpa.so.6 of the installed PySide6 (those that exist)."""
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    files = [qt / "plugins" / "platforms" / "libqxcb.so", *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))]
    return [f for f in files if f.is_file()][:2]


def probe_missing(files) -> list[str]:
    """Sonames the dynamic loader cannot find for ``files``: ``ldd``'s "not found" lines, or, where
    there is no ldd, the library a ctypes load of each file names as missing."""
    missing: list[str] = []
    ldd = shutil.which("ldd")
    for f in files:
        if ldd:
            try:
                out = subprocess.run([ldd, str(f)], capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            found = re.findall(r"^\s*(\S+)\s+=>\s+not found", out, re.M)
        else:
            import ctypes

            try:
                ctypes.CDLL(str(f))
                found = []
            except OSError as e:
                found = re.findall(r"(\S+\.so[.\d]*): cannot open shared object file", str(e))
        for name in found:
            if name not in missing:
                missing.append(name)
    return missing


def missing_xcb_libraries() -> list[str]:
    """The shared libraries Qt's xcb platform plugin needs and this machine lacks ([] when it can load)."""
    try:
        return probe_missing(xcb_plugin_files())
    except Exception:          # the probe must never stop a window that would have opened
        return []


def xcb_message(missing: list[str]) -> str:
    """What to install, in one apt-get line (Debian/Ubuntu package names)."""
    packages = list(dict.fromkeys(XCB_PACKAGES[m] for m in missing if m in XCB_PACKAGES))
    unknown = [m for m in missing if m not in XCB_PACKAGES]
    text = (f"python -m explorer: Qt cannot open a window: its X11 (xcb) platform plugin needs "
            f"{', '.join(missing)}, which this machine does not have.")
    if packages:
        text += f"\nOn Debian/Ubuntu install them with:\n    sudo apt-get install -y {' '.join(packages)}"
    if unknown:
        text += (f"\nFind the package{'s' if len(unknown) > 1 else ''} holding {', '.join(unknown)} with "
                 "`apt-file search NAME` (or your distribution's equivalent).")
    text += ("\n(Qt itself would only say \"xcb-cursor0 or libxcb-cursor0 is needed\" and abort. Without a "
             "screen, `python -m explorer --headless` needs none of these.)")
    return text


if __name__ == "__main__":
    sys.exit(main())
