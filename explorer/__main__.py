"""python -m explorer [--density NAME|FILE.json] [--demo] [--screenshot OUT.png] [--headless]

Opens the Score Explorer window on the default density. With --demo it trains a few hundred steps
and runs the samplers (and, for the lab tab, a small lab); with --screenshot it saves the window to OUT.png and exits (no display
needed: Qt's offscreen platform is selected automatically when there is no DISPLAY). --headless is
--demo --screenshot explorer_demo.png for machines without a screen.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m explorer", description=__doc__.split("\n\n")[1])
    ap.add_argument("--density", default=None, help="preset name or density JSON (default: the built-in default)")
    ap.add_argument("--demo", action="store_true", help="train a few hundred steps and run the samplers")
    ap.add_argument("--steps", type=int, default=400, help="training steps for --demo (default 400)")
    ap.add_argument("--screenshot", metavar="OUT.png", help="save a screenshot of the window and exit")
    ap.add_argument("--tab", default="sampler", choices=["density", "training", "score", "sampler", "lab", "trainer"],
                    help="tab shown in the screenshot (default: sampler)")
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
    from trainers import densities as D

    try:
        density = D.load_density(args.density) if args.density else D.preset(D.DEFAULT_DENSITY)
    except D.DensityError as e:
        ap.error(str(e))

    import pyqtgraph as pg
    from .app import MainWindow
    from .state import AppState

    app = pg.mkQApp("Score Explorer")
    win = MainWindow(AppState(density))
    win.show()
    if args.demo:
        win.run_demo(train_steps=args.steps, lab=args.tab == "lab" or args.all_tabs)
    if args.screenshot:
        out = win.save_screenshot(args.screenshot, args.tab)
        print(f"saved {out}")
        if args.all_tabs:
            root, ext = os.path.splitext(args.screenshot)
            for key in win.views:
                print("saved", win.save_screenshot(f"{root}-{key}{ext or '.png'}", key))
        win.close()
        app.processEvents()
        sys.stdout.flush()
        # PySide6 can crash while the interpreter tears its objects down; the files are written,
        # so leave without that teardown.
        os._exit(0)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
