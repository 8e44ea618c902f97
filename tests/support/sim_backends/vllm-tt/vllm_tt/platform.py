"""Simulated Forge platform: vLLM's CPU platform under the Forge plugin's class path."""

from tt_sim_record import record
from vllm.platforms.cpu import CpuPlatform


class TTPlatform(CpuPlatform):
    device_control_env_var = "TT_VISIBLE_DEVICES"
    ray_device_key = "TT"


record("vllm-tt", "platform_class")
