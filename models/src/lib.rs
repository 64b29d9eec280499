//! Model definitions in Burn, backend-free: the Llama-style dense decoder, the mixture-of-experts
//! decoder, the AST-aware tree transformer and the masked-diffusion denoiser, with weights named
//! like Hugging Face's so that import and export are a name table. (Arrives with the models issue.)
