//! Compact inference: KV-cached decoding with sampling, syntax-aware beam search, batched
//! generation, the OpenAI-compatible HTTP server and quantized export. (Arrives with the inference
//! issue.)
