//! Trainers driven by one TOML recipe: pretraining, SFT, LoRA and RLHF (GRPO/DPO) against the
//! composite code reward, data-parallel over MPI, with full-state checkpoints and resume.
//! (Arrives with the trainer issue.)
