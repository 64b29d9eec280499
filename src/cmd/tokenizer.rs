//! `anvil tokenizer …`

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum TokenizerCommand {}

pub fn run(cmd: TokenizerCommand) -> Result<()> {
    match cmd {}
}
