//! Benchmark helper (bench/run, scenario 2): fills a data dir with finished builds
//! through the store's own insert path, so the API can be measured with many rows.
//!
//! `cargo run --release --example bench_seed -- DATA_DIR COUNT REPOSITORY`
//!
//! Every build is inserted with `Store::insert_build` (the row and its stored
//! Dockerfile, as a submit does) and moved with `Store::transition` through
//! building and pushing to succeeded (one in ten to failed), so each row carries
//! what a real finished build has: timestamps, image id, digest or error.
//! Run it while no dockpub serves that data dir.

use std::path::PathBuf;
use std::process::ExitCode;

use dockpub::domain::{BuildOptions, NewBuild, Status, TagPlan, Timestamp};
use dockpub::store::{Changes, Store};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data_dir, count, repository] = args.as_slice() else {
        eprintln!("usage: bench_seed DATA_DIR COUNT REPOSITORY");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("bench_seed: COUNT must be a number, got '{count}'");
        return ExitCode::from(2);
    };
    let store = match Store::open(&PathBuf::from(data_dir)) {
        Ok(store) => store,
        Err(err) => {
            eprintln!("bench_seed: {err}");
            return ExitCode::FAILURE;
        }
    };
    // One at a time: concurrent writes would only queue for the store's one writer.
    for n in 0..count {
        if let Err(err) = seed_one(&store, repository.clone(), n).await {
            eprintln!("bench_seed: build {n}: {err}");
            return ExitCode::FAILURE;
        }
    }
    println!("bench_seed: {count} builds stored in {data_dir}");
    ExitCode::SUCCESS
}

async fn seed_one(
    store: &Store,
    repository: String,
    n: usize,
) -> Result<(), dockpub::store::StoreError> {
    let new = NewBuild {
        repository,
        tags: TagPlan::Listed(vec![format!("seed-{n}"), "latest".into()]),
        push: true,
        registry_username: None,
        dockerfile: format!(
            "FROM dockpub-test-base:latest\nLABEL bench.seed=\"{n}\"\nRUN echo {n} > /seed\n"
        ),
        context: None,
        options: BuildOptions::default(),
        created_at: Timestamp::now(),
        retry_of: None,
        callback_url: None,
        submitted_by: None,
        source: None,
    };
    let build = store.insert_build(new, usize::MAX, |_| {}).await?;
    // 64 hex digits that differ per build and per kind.
    let hex = |salt: u64| format!("{:016x}", (n as u64 + 1).wrapping_mul(salt)).repeat(4);
    store
        .transition(build.id, None, Status::Building, Changes::default())
        .await?;
    if n % 10 == 9 {
        let failed = Changes {
            error: Some("The command '/bin/sh -c false' returned a non-zero code: 1".into()),
            ..Changes::default()
        };
        store
            .transition(build.id, None, Status::Failed, failed)
            .await?;
        return Ok(());
    }
    let image_id = Some(format!("sha256:{}", hex(0x9e37_79b9_7f4a_7c15)));
    let built = Changes {
        image_id: image_id.clone(),
        ..Changes::default()
    };
    store
        .transition(build.id, None, Status::Pushing, built)
        .await?;
    let pushed = Changes {
        image_id,
        digest: Some(format!("sha256:{}", hex(0xc2b2_ae3d_27d4_eb4f))),
        ..Changes::default()
    };
    store
        .transition(build.id, None, Status::Succeeded, pushed)
        .await?;
    Ok(())
}
