//! The command line's pieces: one module per group of subcommands, and the arguments they share.
//! Each subcommand is an `Args` struct and a function that runs it; `main.rs` only dispatches.

pub mod answer;
pub mod compress;
pub mod info;
pub mod shared;
pub mod transfer;
