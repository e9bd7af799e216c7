"""The llama.cpp RPC testbed of benchmarks/llama_rpc_report.py: llama.cpp
built from its PyPI source, random-weight GGUF models, and a cluster of
ggml-rpc-server processes in network namespaces with shaped links."""
