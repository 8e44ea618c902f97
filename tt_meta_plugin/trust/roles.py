"""What a signed distribution is to its backend: the part vLLM loads, or the device runtime.

A manifest says which (version 3 manifests say "runtime"; versions 1 and 2 are plugins), the
verifier compares it with what it verifies, and the record keeps it. Its own module, because
the manifest's side (signing) and the record's side (children) both need it and neither may
import the other's.
"""

#: the backend's vLLM plugin distribution (tt-vllm-plugin, vllm-tt-plugin, vllm-tt)
PLUGIN = "plugin"
#: a runtime distribution the plugin imports (ttnn, pjrt-plugin-tt)
RUNTIME = "runtime"
