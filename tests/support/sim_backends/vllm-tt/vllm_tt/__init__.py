"""Simulated vllm-tt (tt-xla): the same entry points as the real Forge plugin."""

import os

from tt_sim_record import record

DIST = "vllm-tt"
record(DIST, "imported")


def register() -> str:
    # Like the real one: force spawn, import the runtime (fails when missing), return the path.
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
    import pjrt_plugin_tt  # noqa: F401

    record(DIST, "platform_function")
    return "vllm_tt.platform.TTPlatform"


def register_oot_layers() -> None:
    # The real plugin patches attention and fused-MoE layers; here we only record the call.
    record(DIST, "general_plugin")
