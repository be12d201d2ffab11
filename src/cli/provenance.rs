//! `dockpub provenance ID`: prints the statement pushed with a build's image
//! and checks its DSSE signature, with the server's public key or one given.

use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::api::ApiClient;
use super::{terminal, CliError};
use crate::provenance::{verify, Envelope};

/// Prints the statement (stdout) and what its signature says (stderr); the
/// exit code is non-zero when a signature does not verify.
pub(super) async fn show(
    client: &ApiClient,
    id: i64,
    public_key: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let document = client
        .get(&format!("/api/v1/builds/{id}/provenance"))
        .await?
        .bytes()
        .await?;
    let unexpected = |err: serde_json::Error| CliError::Unexpected(err.to_string());
    let document: Value = serde_json::from_slice(&document).map_err(unexpected)?;
    if document.get("payloadType").is_none() {
        println!("{}", terminal::json(&document));
        eprintln!(
            "dockpub: build {id}'s statement is unsigned (the server has no signing key): \
             nothing proves it was written by this server"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let envelope: Envelope = serde_json::from_value(document).map_err(unexpected)?;
    let (pem, whose) = match public_key {
        Some(path) => (std::fs::read_to_string(path)?, path.display().to_string()),
        None => (
            client
                .get("/api/v1/provenance/public-key")
                .await?
                .text()
                .await?,
            "the server's public key".to_string(),
        ),
    };
    match verify(&envelope, &pem) {
        Ok(payload) => {
            let statement: Value = serde_json::from_slice(&payload).map_err(unexpected)?;
            println!("{}", terminal::json(&statement));
            eprintln!("dockpub: build {id}'s statement: signature verified with {whose}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("dockpub: build {id}'s statement: {err} ({whose})");
            Ok(ExitCode::FAILURE)
        }
    }
}
