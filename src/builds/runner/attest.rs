//! The build's provenance: the statement written from what the run observed,
//! signed when a key is set, pushed as attestation manifests (one per image
//! manifest, as buildx stores them) before any tag moves, and kept beside the
//! build for the API.

use std::collections::BTreeMap;
use std::io;

use sha2::{Digest, Sha256};

use super::error::RunError;
use super::output::Output;
use crate::builds::engine::Engine;
use crate::docker::Builder;
use crate::domain::{Build, Credentials, ProvenanceRecord, Timestamp};
use crate::provenance::{
    self, bases_of, index_annotations, Attestation, Observed, Source, Subject, IN_TOTO_MEDIA_TYPE,
};
use crate::registry::{IndexEntry, IndexPlatform};
use crate::sync::Locked;

/// One pushed image manifest: its platform and digest.
pub(super) struct PushedImage<'a> {
    pub(super) platform: &'a str,
    pub(super) digest: &'a str,
}

/// What the attestation adds to the index, and what the build records.
pub(super) struct Attested {
    pub(super) entries: Vec<IndexEntry>,
    pub(super) record: ProvenanceRecord,
}

/// Writes, signs, pushes and keeps the provenance of `images`.
pub(super) async fn attest(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    images: &[PushedImage<'_>],
    push_login: Option<&Credentials>,
    output: &Output,
) -> Result<Attested, RunError> {
    let observed = observe(engine, build, builder, images, output).await?;
    let subjects: Vec<Subject> = images.iter().map(|image| subject(build, image)).collect();
    let statement = provenance::statement(&observed, &subjects);
    let statement = serde_json::to_vec(&statement).expect("a statement always serializes");
    let settings = &engine.settings.provenance;
    let envelope = settings
        .key
        .as_ref()
        .map(|key| key.sign(IN_TOTO_MEDIA_TYPE, &statement));
    let digests: Vec<String> = images.iter().map(|i| i.digest.to_string()).collect();
    let attestation = Attestation::new(statement, envelope.as_ref(), &digests);
    let registry = &engine.settings.registry;
    let repository = &build.repository;
    for blob in attestation.blobs() {
        registry
            .put_blob(repository, &blob.digest, blob.bytes.clone(), push_login)
            .await?;
    }
    let mut entries = Vec::new();
    for (image, manifest) in &attestation.manifests {
        registry
            .put_manifest(
                repository,
                &manifest.digest,
                manifest.media_type,
                manifest.bytes.clone(),
                push_login,
            )
            .await?;
        served_as_put(engine, repository, &manifest.digest, push_login).await?;
        entries.push(IndexEntry {
            media_type: manifest.media_type.to_string(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            platform: Some(IndexPlatform {
                architecture: "unknown".into(),
                os: "unknown".into(),
                variant: None,
            }),
            annotations: Some(
                index_annotations(image)
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect::<BTreeMap<_, _>>(),
            ),
        });
    }
    let document = match &attestation.envelope {
        Some(envelope) => envelope.bytes.clone(),
        None => attestation.statement.bytes.clone(),
    };
    engine.store.write_provenance(build.id, document).await?;
    let signed = attestation.envelope.is_some();
    output.log.line(format!(
        "dockpub: provenance {} ({}) pushed as {} attestation manifest(s)",
        attestation.statement.digest,
        if signed { "signed" } else { "unsigned" },
        entries.len()
    ));
    Ok(Attested {
        entries,
        record: ProvenanceRecord {
            digest: attestation.statement.digest.clone(),
            signed,
        },
    })
}

/// The registry serves the attestation manifest just put under its digest.
async fn served_as_put(
    engine: &Engine,
    repository: &str,
    digest: &str,
    push_login: Option<&Credentials>,
) -> Result<(), RunError> {
    let served = engine
        .settings
        .registry
        .manifest(repository, digest, push_login)
        .await?;
    if served.digest == digest {
        return Ok(());
    }
    Err(RunError::Provenance(format!(
        "the registry serves {} for the attestation manifest {repository}@{digest}",
        served.digest
    )))
}

/// `pkg:docker/REPOSITORY@TAG?platform=OS%2FARCH`, as buildx names a subject.
fn subject(build: &Build, image: &PushedImage<'_>) -> Subject {
    let tag = build.tags.first().map(String::as_str).unwrap_or("latest");
    Subject {
        name: format!(
            "pkg:docker/{}@{tag}?platform={}",
            build.repository,
            image.platform.replace('/', "%2F")
        ),
        digest: image.digest.to_string(),
    }
}

/// What dockpub saw of the build: its record, its stored files, the base
/// images BuildKit reported resolving. Secret values are not among them.
async fn observe(
    engine: &Engine,
    build: &Build,
    builder: &Builder,
    images: &[PushedImage<'_>],
    output: &Output,
) -> Result<Observed, RunError> {
    let dockerfile = engine.store.read_dockerfile(build.id).await?;
    let source = match (&build.source, &build.context_dockerfile) {
        (Some(git), _) => Source::Git {
            url: git.git.clone(),
            git_ref: git.git_ref.clone(),
            commit: git.commit.clone(),
        },
        (None, Some(_)) => Source::Upload {
            digest: context_digest(engine, build.id).await?,
        },
        (None, None) => Source::DockerfileOnly,
    };
    let bases = output.bases.locked().clone();
    let options = &build.options;
    // The record, not the request, says which builder ran: a daemon that
    // refused BuildKit built it with the legacy one.
    let recorded = engine.store.get_build(build.id).await?;
    let buildkit = recorded.map_or(options.buildkit, |b| b.options.buildkit);
    Ok(Observed {
        dockpub_id: engine.settings.provenance.builder_id.clone(),
        builder: builder.name().to_string(),
        buildkit: builder.runs_buildkit(buildkit),
        build_id: build.id,
        submitted_by: build.submitted_by.clone(),
        source,
        dockerfile_path: build
            .context_dockerfile
            .clone()
            .or_else(|| options.dockerfile.clone()),
        dockerfile_digest: format!("sha256:{}", hex::encode(Sha256::digest(&dockerfile))),
        build_args: options.build_args.clone(),
        secret_ids: options.secrets.clone(),
        target: options.target.clone(),
        platforms: images.iter().map(|i| i.platform.to_string()).collect(),
        labels: options.labels.clone(),
        bases: bases_of(&dockerfile, &bases),
        started_on: build.started_at.map(Timestamp::to_rfc3339),
        finished_on: Timestamp::now().to_rfc3339(),
    })
}

/// The sha256 of the stored context archive, as the daemon was sent it.
async fn context_digest(engine: &Engine, id: i64) -> Result<String, RunError> {
    let path = engine.store.files().context_path(id);
    let hashed = tokio::task::spawn_blocking(move || -> io::Result<String> {
        let mut hasher = Sha256::new();
        io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
    })
    .await
    .map_err(io::Error::other)
    .and_then(|hashed| hashed);
    hashed.map_err(|err| RunError::Provenance(format!("cannot read the stored context: {err}")))
}
