//! Integration tests: the registry served in-process on 127.0.0.1:0 over real mutual TLS, and the
//! `exchange` binary run as a child process (SIGKILL, quickstart, CLI).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod bulk;
mod catalog;
mod clocks;
mod config;
mod deploy;
mod grants;
mod harness;
mod identity;
mod node;
mod process;
mod servers;
mod watch;
