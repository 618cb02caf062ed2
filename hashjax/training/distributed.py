"""Joining JAX's multi-host runtime (`jax.distributed`) from the command line.

Every process of a job runs the same command; `jax.distributed.initialize` connects them
through a coordinator (process 0 listens on coordinator_address), after which `jax.devices()`
lists every process's devices and one jitted step spans them all.

Three ways in (`--distributed`):

  explicit   --coordinator_address=HOST:PORT --num_processes=N --process_id=I on each process
             (any machine; e.g. several processes on one machine, or hosts without a scheduler)
  auto       (default) the explicit values if given; else, when JAX's own cluster detection
             would find the job (the variables it reads, jax 0.10.2 jax/_src/clusters/):
               SLURM      SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID and
                          SLURM_LOCALID all set, i.e. inside an `srun` step
               Open MPI   OMPI_MCA_orte_hnp_uri set (`mpirun` of Open MPI 4)
               Cloud TPU  a TPU VM (libtpu with TPU chips, JAX's running_in_cloud_tpu_vm;
                          JAX then reads the worker list from the VM's metadata or from
                          TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES)
             `jax.distributed.initialize()` without arguments; otherwise one process, no runtime
  on         as auto, but a job that detects nothing still calls initialize() (JAX's other
             detectors, e.g. Kubernetes, or JAX_COORDINATOR_ADDRESS), and fails if JAX cannot
  off        never: one process, even inside an srun step

Explicit values win over detected ones (JAX fills in only what is missing), so inside SLURM
`--coordinator_address=host:port` alone picks the port.
"""

import dataclasses
import os

import jax

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")
OMPI_VAR = "OMPI_MCA_orte_hnp_uri"
MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class Request:
  """What the command line asks for: --distributed and the three explicit values."""
  mode: str = "auto"
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  @property
  def explicit(self) -> dict:
    return {k: v for k, v in (("coordinator_address", self.coordinator_address),
                              ("num_processes", self.num_processes),
                              ("process_id", self.process_id)) if v is not None}


def validate(request: Request) -> None:
  """Raises ValueError naming the flag whose value cannot work."""
  if request.mode not in MODES:
    raise ValueError(f"--distributed must be one of {', '.join(MODES)}, got {request.mode!r}")
  if request.mode == "off" and request.explicit:
    raise ValueError(f"--distributed=off contradicts --{', --'.join(request.explicit)}; drop "
                     "one or the other")
  if request.num_processes is not None and request.num_processes < 1:
    raise ValueError(f"--num_processes must be >= 1, got {request.num_processes}")
  if request.process_id is not None:
    if request.process_id < 0:
      raise ValueError(f"--process_id must be >= 0, got {request.process_id}")
    if request.num_processes is not None and request.process_id >= request.num_processes:
      raise ValueError(f"--process_id must be < --num_processes ({request.num_processes}): the "
                       f"processes are numbered 0..{request.num_processes - 1}, got "
                       f"{request.process_id}")
  if request.coordinator_address is not None:
    _check_address(request.coordinator_address)


def _check_address(address: str) -> None:
  host, sep, port = address.rpartition(":")
  problem = None
  if not sep or not host:
    problem = "it has no host:port"
  elif host.startswith("[") != host.endswith("]"):
    problem = "an IPv6 host goes in brackets, [::1]:PORT"
  elif ":" in host and not host.startswith("["):
    problem = "an IPv6 host goes in brackets, [::1]:PORT"
  elif not port.isdigit() or not 0 < int(port) < 65536:
    problem = f"port {port!r} is not a number in 1..65535"
  if problem:
    raise ValueError(f"--coordinator_address must be HOST:PORT (process 0's host and a free "
                     f"port, e.g. 10.0.0.1:1234 or 127.0.0.1:1234), got {address!r}: {problem}")


def detect_cluster(environ=None) -> str | None:
  """The cluster JAX's initialize() would detect by itself: 'slurm', 'ompi', 'cloud_tpu' or None."""
  environ = os.environ if environ is None else environ
  if all(v in environ for v in SLURM_VARS):
    return "slurm"
  if OMPI_VAR in environ:
    return "ompi"
  if _on_cloud_tpu_vm():
    return "cloud_tpu"
  return None


def _on_cloud_tpu_vm() -> bool:
  # Set by `import jax` (cloud_tpu_init) when libtpu is installed and TPU chips are present.
  from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def plan(request: Request, environ=None) -> tuple[dict | None, str]:
  """(initialize()'s keyword arguments, or None for one process; a line for the log)."""
  validate(request)
  if request.mode == "off":
    return None, "single process (--distributed=off)"
  explicit = request.explicit
  cluster = detect_cluster(environ)
  if explicit:
    missing = [k for k in ("coordinator_address", "num_processes", "process_id")
               if k not in explicit]
    if missing and not cluster and request.mode == "auto":
      raise ValueError(f"--{', --'.join(explicit)} given without --{', --'.join(missing)}: give "
                       "all three (no SLURM, Open MPI or Cloud TPU environment was detected to "
                       "fill them in)")
    how = "the command line" + (f" and {cluster}" if missing and cluster else "")
    return explicit, f"jax.distributed from {how}: {explicit}"
  if cluster:
    return {}, f"jax.distributed from the {cluster} environment (initialize() detects it)"
  if request.mode == "on":
    return {}, "jax.distributed.initialize() (--distributed=on, no known cluster detected)"
  return None, "single process (no cluster detected; see --distributed)"


def initialize(request: Request, environ=None) -> str:
  """Joins the multi-host runtime as `request` says; returns what was done, for the log.

  Must run before anything touches a JAX backend (jax.devices(), an array).
  """
  kwargs, description = plan(request, environ)
  if kwargs is not None:
    try:
      jax.distributed.initialize(**kwargs)
    except ValueError as e:  # JAX's own: a value it could not detect
      raise ValueError(f"jax.distributed.initialize({kwargs or ''}) failed: {e}. Pass "
                       "--coordinator_address, --num_processes and --process_id, or "
                       "--distributed=off for one process") from e
  return description
