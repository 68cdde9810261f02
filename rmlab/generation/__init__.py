"""Generation engines (`generation.engine`): `hf` is Hugging Face `generate` in the run's process
(rmlab.paradigms.tokens.generate); `vllm` a vLLM server on the saved model (server: its lifecycle; engine: the
client with `generate`'s contract, GRM's label probabilities and the policy's weight reloads; vllm_shim and watchdog
run outside rmlab's environment). Nothing here imports vLLM: it lives in its own environment (`make vllm`)."""
