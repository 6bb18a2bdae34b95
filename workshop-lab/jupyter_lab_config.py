"""JupyterLab for the workshop, from the repository folder:

    .venv/bin/jupyter lab --config=workshop-lab/jupyter_lab_config.py notebooks/

No news pop-up over the first notebook ("Would you like to get notified about official Jupyter
news?") and no update check: both would reach for the internet. The pop-up is a setting's default,
so it is changed where JupyterLab reads such defaults, ``overrides.json`` beside this file.
"""

from pathlib import Path

c = get_config()  # noqa: F821  (traitlets provides it to config files)
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent)  # holds overrides.json
