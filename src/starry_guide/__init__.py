"""Starry Guide: P(clear night sky) over the next 1-12 hours from hourly station weather.

Modules, one per concern: ``config`` (params.yaml), ``stations`` (station files), ``quality``
(validation and repairs), ``astro`` (sun and moon), ``features`` (the one feature function),
``splits``, ``models``, ``evaluate``, ``training``, ``champion``, ``monitor``, ``tracking``
(MLflow), ``notebook`` (the Papermill stage runner), ``docs``, ``cli``.
"""

import os
import warnings

# The stage notebooks' stored outputs are regression-tested (nbval), so chatter that differs
# between runs must not reach them: MLflow's artifact progress bars, and tqdm's notice that
# ipywidgets is absent (MLflow imports tqdm.auto).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
