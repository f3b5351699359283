r"""stegjax command line: one config, one experiment.

  python -m stegjax.main --config=configs/cmsteg.py            # the CPU default
  python -m stegjax.main --config=configs/cmsteg.py:smoke      # seconds-long
  python -m stegjax.main --config=configs/cmsteg.py --config.cmsteg.top_k=500 --workdir=/tmp/run

Dispatches to ``stegjax.experiments.<config.experiment>.run(config, workdir)``.
Launched as one of several processes (``--num_processes`` / ``--process_id`` /
``--coordinator_address``, or a Slurm / TPU environment that
``jax.distributed.initialize`` detects when ``--distributed`` is set), it first
joins the distributed job. User errors (``stegjax.errors``) print one line and exit
non-zero; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import importlib
import logging as logging_std
import os
import platform
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from stegjax import errors

_PACKAGE_DIR = os.path.dirname(os.path.abspath(errors.__file__)) + os.sep

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Path to a config file, optionally `file.py:arg` (smoke | cpu | gpu | paper).",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Output directory (default ./workdir/<experiment>)."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed", False, "Call jax.distributed.initialize() (auto-detects Slurm / TPU pods)."
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.path.join("workdir", "jax_cache"),
  "Directory of jax's persistent compilation cache, so a repeated command (embed, extract, a "
  "rerun) loads its compiled programs instead of compiling them again; empty turns it off.",
)
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show full tracebacks for user errors.")
_CPU_DEVICES = flags.DEFINE_integer(
  "cpu_devices",
  min(2, os.cpu_count() or 1),
  "Split the host CPU into this many JAX devices, so the data-parallel mesh keeps every core "
  "busy (XLA's per-op threading leaves cores idle on these small models); 1 turns it off. "
  "Only the CPU platform is affected; an XLA_FLAGS device count takes precedence.",
)


class _StegjaxOrWarnings(logging_std.Filter):
  """Lets through stegjax's own records and any warning; drops other libraries' INFO."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or record.pathname.startswith(_PACKAGE_DIR)


def _quiet_libraries():
  """Default verbosity: stegjax's one-line summaries and progress bars, no orbax/jax/absl INFO.

  An explicit ``--verbosity`` (absl's flag; 0 = INFO, 1 = DEBUG) shows everything it admits.
  """
  if flags.FLAGS["verbosity"].present:
    return
  logging.get_absl_handler().addFilter(_StegjaxOrWarnings())


def _split_cpu(n: int):
  """Sets XLA's host device count before the JAX backend starts (it reads XLA_FLAGS once)."""
  flags_now = os.environ.get("XLA_FLAGS", "")
  if n > 1 and "xla_force_host_platform_device_count" not in flags_now:
    os.environ["XLA_FLAGS"] = f"{flags_now} --xla_force_host_platform_device_count={n}".strip()


def _use_compilation_cache(path: str):
  import jax

  if not path:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
  # Only programs that took a while to compile: the many tiny ones cost more to store than to build.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _init_distributed():
  import jax

  explicit = _NUM_PROCESSES.value is not None and _NUM_PROCESSES.value > 1
  env_n = int(os.environ.get("STEGJAX_NUM_PROCESSES", "1"))
  if not (explicit or env_n > 1 or _DISTRIBUTED.value):
    return
  kwargs = {}
  if explicit or env_n > 1:
    kwargs = dict(
      coordinator_address=_COORDINATOR.value
      or os.environ.get("STEGJAX_COORDINATOR", "localhost:12355"),
      num_processes=_NUM_PROCESSES.value or env_n,
      process_id=(
        _PROCESS_ID.value
        if _PROCESS_ID.value is not None
        else int(os.environ.get("STEGJAX_PROCESS_ID", "0"))
      ),
    )
  jax.distributed.initialize(**kwargs)


def _log_environment():
  import flax
  import jax
  import optax

  logging.info(
    "python %s, jax %s, flax %s, optax %s",
    platform.python_version(),
    jax.__version__,
    flax.__version__,
    optax.__version__,
  )
  logging.info(
    "process %d/%d: %d local devices, %d global: %s",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    [str(d) for d in jax.local_devices()],
  )


def _experiment(config):
  name = config.get("experiment", None) if config is not None else None
  if not name:
    raise errors.ConfigError("the config has no `experiment` field")
  try:
    return name, importlib.import_module(f"stegjax.experiments.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"stegjax.experiments.{name}":
      raise
    here = os.path.join(os.path.dirname(__file__), "experiments")
    valid = sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))
    raise errors.ConfigError(f"unknown experiment {name!r}; valid: {valid}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/cmsteg.py")
  _quiet_libraries()
  _split_cpu(_CPU_DEVICES.value)  # before any experiment module touches the backend
  try:
    name, module = _experiment(config)
    _init_distributed()
    _use_compilation_cache(_COMPILATION_CACHE.value)
    _log_environment()
    workdir = _WORKDIR.value or os.path.join("workdir", config.get("name", name))
    logging.info("experiment %s, workdir %s", name, os.path.abspath(workdir))
    module.run(config, workdir)
  except errors.StegjaxError as e:
    if _TRACEBACK.value:
      raise
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f"stegjax: error: {type(e).__name__}: {msg}", file=sys.stderr)
    sys.exit(2)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
