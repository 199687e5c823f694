"""Make the engines' own logging readable in an Airflow task log.

Airflow labels whatever a task writes to stderr as ERROR. MLflow installs its own stderr handler and draws tqdm
progress bars there, and Feast logs "Registry cache expired" each time a store object is opened. Asgard routes
MLflow's records through Python logging at their real level, turns the progress bars off, and keeps Feast's
registry-refresh chatter at WARNING and above.
"""

from __future__ import annotations

import logging
import os
import sys

#: Environment settings read by the libraries themselves (MLflow reads its two when it is imported / downloads).
ENV = {"MLFLOW_CONFIGURE_LOGGING": "false", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1"}

#: Loggers that repeat a line for every store or client object a task opens.
CHATTY = ("feast.infra.registry.registry",)


def quiet_library_logs() -> None:
    """Apply :data:`ENV` (unless set) and re-route MLflow's logger; safe to call more than once."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow_logger = logging.getLogger("mlflow")
    for handler in list(mlflow_logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
            mlflow_logger.removeHandler(handler)
    mlflow_logger.propagate = True
