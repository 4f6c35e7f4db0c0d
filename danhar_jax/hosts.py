"""A dead host in a multi-host run: the survivors stop with one line, in bounded time.

When a process dies, the others learn it one of two ways. A collective it should have joined
fails at once (gloo on CPU: 'Connection reset by peer'); that surfaces here as a JaxRuntimeError.
Otherwise JAX's coordination service misses its heartbeats for `heartbeat_timeout_seconds` and
terminates every other process itself, with its own log lines.
"""

from __future__ import annotations

import os
import sys

# Words of the runtime's errors when a peer is gone, as gloo and the coordination service say it.
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Gloo",
             "heartbeat", "coordination service", "UNAVAILABLE", "DEADLINE_EXCEEDED")


# How the runtime's status messages begin; Orbax re-raises them as ValueError, unchained.
STATUS_CODES = ("UNKNOWN:", "UNAVAILABLE:", "INTERNAL:", "DEADLINE_EXCEEDED:", "ABORTED:",
                "CANCELLED:")


def lost_a_peer(e: BaseException) -> bool:
  """Whether `e`, or an error it wraps, says another process of this multi-host run is gone."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    text = str(e).strip()
    runtime = (type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
               or text.startswith(STATUS_CODES))
    if runtime and any(w in text for w in PEER_LOST):
      # Only now: asking JAX starts its backend, which a user error must not wait for.
      import jax  # pylint: disable=import-outside-toplevel  (already imported by a run)
      return jax.process_count() > 1
    e = e.__cause__ or e.__context__
  return False


def stop(e: BaseException) -> None:
  """Exits non-zero now, with one line. Not through sys.exit: JAX's exit handler would wait on a
  shutdown barrier that the dead process never reaches, then abort with a stack dump."""
  import jax  # pylint: disable=import-outside-toplevel
  first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
  sys.stderr.write(
      f"error: process {jax.process_index()}/{jax.process_count()} lost another process of this "
      f"multi-host run ({first}). Re-run every process with the same command to resume from "
      "the last checkpoint.\n")
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(1)
