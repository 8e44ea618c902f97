"""Simulated Metal platform: vLLM's CPU platform under the Metal plugin's class path."""

from tt_sim_record import record
from vllm.platforms.cpu import CpuPlatform

try:  # the runtime, as the real platform imports ttnn (the simulated one, when installed)
    import ttnn
except ImportError:
    ttnn = None


class TTPlatform(CpuPlatform):
    device_control_env_var = "TT_VISIBLE_DEVICES"


record("tt-vllm-plugin", "platform_class", runtime=ttnn.LIBRARIES if ttnn else None)
