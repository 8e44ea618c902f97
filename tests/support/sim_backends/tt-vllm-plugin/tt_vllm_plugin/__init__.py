"""Simulated tt-vllm-plugin: the same entry points as the real Metal plugin."""

from tt_sim_record import fail_if_asked, record

DIST = "tt-vllm-plugin"
record(DIST, "imported")


def register() -> str:
    # Like the real one: the class path, unconditionally (no hardware probe).
    record(DIST, "platform_function")
    fail_if_asked(DIST, "platform_function")
    return "tt_vllm_plugin.platform.TTPlatform"


def register_models() -> None:
    # The real plugin registers its TT model classes; we register one TT architecture name.
    fail_if_asked(DIST, "general_plugin")
    from vllm import ModelRegistry

    if "TTLlamaForCausalLM" not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(
            "TTLlamaForCausalLM", "vllm.model_executor.models.llama:LlamaForCausalLM"
        )
    record(DIST, "general_plugin")
