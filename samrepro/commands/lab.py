"""`make lab`: JupyterLab on the notebooks, with the project's Python as their kernel, offline.

    python -m samrepro.commands.lab [--notebook-dir notebooks] [any other `jupyter lab` option]

The notebooks name the kernel `python3`; a JupyterLab started by this Python resolves that
name to this very interpreter (ipykernel's native kernel), so the notebooks run with the
package, its dependencies and the embedded model of the environment that `make setup` made.
JupyterLab asks nothing of the network here: no announcements feed, no update check, and an
extension manager that does not search an index (`OFFLINE`); its notification settings
default to "never fetch news, never check for updates" (`SETTINGS`, through an overrides.json
in a settings folder of its own), so it does not ask "Would you like to get notified about
official Jupyter news?" either.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

OFFLINE = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",
)


# JupyterLab's defaults for its news toast: "none" asks the user whether to fetch news
SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                            "checkForUpdates": False}}


def settings_folder() -> Path:
    """A new folder holding overrides.json with `SETTINGS` (JupyterLab's app settings)."""
    folder = Path(tempfile.mkdtemp(prefix="samrepro-lab-settings-"))
    (folder / "overrides.json").write_text(json.dumps(SETTINGS, indent=1), encoding="utf-8")
    return folder


def command(args: list[str]) -> list[str]:
    """The `jupyter lab` command line, run by this Python, with the offline options first
    (options given later on the command line override them). As root (a container, a CI
    machine) Jupyter refuses to start without `--allow-root`, which is then added."""
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    quiet = [] if any(a.startswith("--LabApp.app_settings_dir") for a in args) else [
        f"--LabApp.app_settings_dir={settings_folder()}"]
    return [sys.executable, "-m", "jupyterlab", *OFFLINE, *quiet, *root, *args]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if importlib.util.find_spec("jupyterlab") is None:
        print("samrepro: error: JupyterLab is not installed: pip install -e '.[notebooks]' "
              "(make setup installs it)", file=sys.stderr)
        return 2
    cmd = command(args)
    os.execv(cmd[0], cmd)  # JupyterLab replaces this process: Ctrl-C stops it as usual
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
