//! The integration tests, one binary with a module per area, so the crate and its
//! dependencies are linked once. `cargo test --test it api_v1::` runs one area,
//! `cargo test --test it -- --exact api_v1::health` one test.
//!
//! Most tests start a real `dockpub` process on the real Docker daemon and the
//! registries `scripts/test` sets up; API-level tests that need no daemon run the
//! server in this process (`common::Server::in_process`). See `common`.

mod common;

mod api_v1;
mod bad_input;
mod build_logs;
mod builder_pool;
mod buildkit;
mod cli;
mod cli_habits;
mod concurrency;
mod config_rules;
mod contexts;
mod credentials;
mod expect_continue;
mod field_limits;
mod files;
mod followers;
mod full_disk;
mod git_sources;
mod head;
mod live;
mod metrics;
mod openapi;
mod platforms;
mod provenance;
mod readme;
mod reads;
mod recovery;
mod registry_faults;
mod reliability;
mod secrets;
mod security;
mod seed_api;
mod ssh_mounts;
mod stalls;
mod tokens;
mod triggers;
mod upload_memory;
mod web_page;
mod webhooks;
