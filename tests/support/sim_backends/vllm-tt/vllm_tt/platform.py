"""Simulated Forge platform: vLLM's CPU platform under the Forge plugin's class path."""

import os

from tt_sim_record import record
from vllm.platforms.cpu import CpuPlatform


class TTPlatform(CpuPlatform):
    device_control_env_var = "TT_VISIBLE_DEVICES"
    # The real platform's key is "TT". Ray cannot give accelerator ids for a custom resource
    # (vLLM 0.32 asks get_accelerator_ids()[key]), so the Ray test schedules on "GPU".
    ray_device_key = os.environ.get("TT_SIM_RAY_DEVICE_KEY", "TT")


record("vllm-tt", "platform_class")
