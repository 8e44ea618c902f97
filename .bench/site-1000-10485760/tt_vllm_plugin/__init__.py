def register():
    return "tt_vllm_plugin.platform.TTPlatform"


def register_models():
    pass
