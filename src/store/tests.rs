use super::*;
use crate::domain::{BuildOptions, LogLine, NewBuild, PlatformImage, TagPlan, Timestamp};

pub(super) fn new_build(n: usize) -> NewBuild {
    NewBuild {
        repository: "store/app".into(),
        tags: TagPlan::Listed(vec![format!("t{n}")]),
        push: false,
        registry_username: None,
        dockerfile: "FROM scratch\n".into(),
        context: None,
        options: BuildOptions::default(),
        created_at: Timestamp::now(),
        retry_of: None,
        callback_url: None,
        submitted_by: None,
        source: None,
    }
}

async fn store_with(count: usize) -> (tempfile::TempDir, Store, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            store
                .insert_build(new_build(n), usize::MAX, |_| {})
                .await
                .unwrap()
                .id,
        );
    }
    (dir, store, ids)
}

#[tokio::test]
async fn lists_newest_first_and_reads_one() {
    let (_dir, store, ids) = store_with(3).await;
    let build = store.get_build(ids[1]).await.unwrap().unwrap();
    assert_eq!(build.tags, vec!["t1".to_string()]);
    assert_eq!(build.status, Status::Queued);
    let filter = ListFilter {
        status: None,
        before: Some(ids[2]),
        submitted_by: None,
        limit: 5,
        max_bytes: None,
    };
    let listed: Vec<i64> = store
        .list_builds(filter)
        .await
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(listed, vec![ids[1], ids[0]]);
}

#[tokio::test]
async fn refuses_a_build_past_the_queue_limit_and_keeps_nothing() {
    let (dir, store, _) = store_with(2).await;
    let refused = store
        .insert_build(new_build(9), 2, |_| panic!("no id for a refused build"))
        .await;
    assert!(matches!(refused, Err(StoreError::QueueFull { limit: 2 })));
    let all = ListFilter {
        status: None,
        before: None,
        submitted_by: None,
        limit: 10,
        max_bytes: None,
    };
    assert_eq!(store.list_builds(all).await.unwrap().len(), 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join("builds"))
            .unwrap()
            .count(),
        2
    );
}

#[tokio::test]
async fn moves_only_along_the_status_model() {
    let (_dir, store, ids) = store_with(1).await;
    let id = ids[0];
    assert!(store
        .transition(id, None, Status::Pushing, Changes::default())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim_next_queued("local".into(), Vec::new())
        .await
        .unwrap()
        .is_some());
    let cancelled = store
        .transition(id, None, Status::Cancelled, Changes::default())
        .await
        .unwrap()
        .unwrap();
    assert!(cancelled.finished_at.is_some());
    assert!(store
        .transition(id, None, Status::Succeeded, Changes::default())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_builder_claims_only_builds_for_its_platforms_and_counts_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut arm = new_build(0);
    arm.options.platform = Some("linux/arm64".into());
    let arm = store.insert_build(arm, 10, |_| {}).await.unwrap();
    let any = store.insert_build(new_build(1), 10, |_| {}).await.unwrap();
    let amd64 = vec!["linux/amd64".to_string()];
    let claimed = store
        .claim_next_queued("x86".into(), amd64.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.id, claimed.builder.as_deref(), claimed.attempts),
        (any.id, Some("x86"), 1)
    );
    assert!(store
        .claim_next_queued("x86".into(), amd64)
        .await
        .unwrap()
        .is_none());
    let claimed = store
        .claim_next_queued("pi".into(), vec!["linux/arm64".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, arm.id);
    let requeued = store
        .transition(arm.id, None, Status::Queued, Changes::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((requeued.builder, requeued.attempts), (None, 1));
}

#[tokio::test]
async fn a_build_of_several_platforms_goes_to_a_builder_offering_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut both = new_build(0);
    both.options.platform = Some("linux/amd64,linux/arm64".into());
    let both = store.insert_build(both, 10, |_| {}).await.unwrap();
    for (builder, offers) in [("s390", "linux/s390x"), ("arm", "linux/arm")] {
        let claimed = store
            .claim_next_queued(builder.into(), vec![offers.into()])
            .await
            .unwrap();
        assert!(
            claimed.is_none(),
            "{builder} claimed a build it offers no platform of"
        );
    }
    let claimed = store
        .claim_next_queued("pi".into(), vec!["linux/arm64".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, both.id);
    let platforms = vec![PlatformImage {
        platform: "linux/arm64".into(),
        image_id: "sha256:aa".into(),
        digest: "sha256:bb".into(),
    }];
    let changes = Changes {
        platforms: Some(platforms.clone()),
        ..Changes::default()
    };
    let ended = store
        .transition(both.id, None, Status::Succeeded, changes)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.platforms, platforms);
}

#[tokio::test]
async fn keeps_the_newest_succeeded_builds_and_everything_after_them() {
    let (_dir, store, ids) = store_with(6).await;
    let ends = [
        Status::Succeeded,
        Status::Failed,
        Status::Succeeded,
        Status::Cancelled,
        Status::Succeeded,
    ];
    for (&id, end) in ids.iter().zip(ends) {
        store
            .claim_next_queued("local".into(), Vec::new())
            .await
            .unwrap();
        store
            .transition(id, None, end, Changes::default())
            .await
            .unwrap()
            .unwrap();
    }
    // ids[5] is still queued: never pruned, and not counted among the kept.
    let prunable = |keep| {
        let store = store.clone();
        async move { store.prunable_builds(None, keep).await.unwrap() }
    };
    assert_eq!(prunable(Some(1)).await, ids[..4].to_vec());
    assert_eq!(prunable(Some(2)).await, ids[..2].to_vec());
    assert_eq!(prunable(Some(3)).await, Vec::<i64>::new());
    assert_eq!(prunable(Some(4)).await, Vec::<i64>::new());
    assert_eq!(prunable(Some(0)).await, ids[..5].to_vec());
    let long_ago = Timestamp(chrono::Utc::now() - chrono::Duration::days(1));
    assert_eq!(
        store.prunable_builds(Some(long_ago), None).await.unwrap(),
        Vec::<i64>::new()
    );
    let soon = Timestamp(chrono::Utc::now() + chrono::Duration::seconds(5));
    assert_eq!(
        store.prunable_builds(Some(soon), Some(2)).await.unwrap(),
        ids[..2].to_vec()
    );
}

#[tokio::test]
async fn keeps_the_build_that_owns_a_tag_the_kept_builds_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for n in 0..4 {
        let new = NewBuild {
            tags: TagPlan::Listed(vec!["t".into()]),
            ..new_build(n)
        };
        let id = store
            .insert_build(new, usize::MAX, |_| {})
            .await
            .unwrap()
            .id;
        store
            .claim_next_queued("local".into(), Vec::new())
            .await
            .unwrap();
        let changes = Changes {
            image_id: Some(format!("sha256:{n}")),
            ..Changes::default()
        };
        store
            .transition(id, None, Status::Succeeded, changes)
            .await
            .unwrap()
            .unwrap();
        ids.push(id);
    }
    // The first build finished last: the tag names its image, the others' moved.
    let published = crate::store::PublishedTag {
        by: ids[0],
        repository: "store/app".into(),
        tag: "t".into(),
        image_id: "sha256:0".into(),
        builder: "local".into(),
        pushed: false,
    };
    assert_eq!(
        store.record_tag_moved(published).await.unwrap(),
        ids[1..].to_vec()
    );
    // Keeping the last two by id would prune the owner; it stays.
    assert_eq!(
        store.prunable_builds(None, Some(2)).await.unwrap(),
        vec![ids[1]]
    );
    assert_eq!(
        store.prunable_builds(None, Some(1)).await.unwrap(),
        ids[1..3].to_vec()
    );
    assert_eq!(store.prunable_builds(None, Some(0)).await.unwrap(), ids);
}

fn numbered_lines(id: i64, from: i64, count: i64) -> Arc<Vec<LogLine>> {
    let lines = (from..from + count).map(|seq| LogLine {
        seq,
        line: format!("build {id} line {seq}"),
    });
    Arc::new(lines.collect())
}

/// `seq<TAB>line` per line.
fn numbered(text: &mut String, seq: i64, line: &str) {
    text.push_str(&format!("{seq}\t{line}\n"));
}

/// Every stored line of build `id`, read page by page.
async fn read_all_pages(store: &Store, id: i64, after: i64) -> (Vec<LogLine>, usize) {
    let (mut all, mut pages, mut after) = (Vec::new(), 0, after);
    while let Some(page) = store
        .read_log_page(id, after, numbered, PAGE_BYTES)
        .await
        .unwrap()
    {
        pages += 1;
        after = page.last_seq;
        all.extend(page.text.lines().map(|numbered| {
            let (seq, line) = numbered.split_once('\t').unwrap();
            LogLine {
                seq: seq.parse().unwrap(),
                line: line.into(),
            }
        }));
        if !page.full {
            break;
        }
    }
    (all, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_sleep_and_each_log_lands_in_order() {
    let (_dir, store, ids) = store_with(4).await;
    let busy_before = Store::busy_waits();
    let mut writers = tokio::task::JoinSet::new();
    for &id in &ids {
        let store = store.clone();
        writers.spawn(async move {
            for batch in 0..40 {
                let lines = numbered_lines(id, batch * 50 + 1, 50);
                store.append_logs(id, lines).await.unwrap();
            }
        });
    }
    for submitter in 0..8 {
        let store = store.clone();
        writers.spawn(async move {
            for n in 0..10 {
                let build = new_build(submitter * 10 + n);
                let inserted = store.insert_build(build, usize::MAX, |_| {}).await.unwrap();
                store
                    .transition(inserted.id, None, Status::Cancelled, Changes::default())
                    .await
                    .unwrap()
                    .unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        Store::busy_waits(),
        busy_before,
        "a writer slept in the busy handler"
    );
    for &id in &ids {
        let (lines, _) = read_all_pages(&store, id, 0).await;
        assert_eq!(lines, numbered_lines(id, 1, 2000).as_ref().clone());
    }
    let cancelled = ListFilter {
        status: Some(Status::Cancelled),
        limit: 500,
        ..ListFilter::default()
    };
    assert_eq!(store.list_builds(cancelled).await.unwrap().len(), 80);
}

#[tokio::test]
async fn the_generation_moves_after_a_build_write_commits_and_not_for_log_lines() {
    let (_dir, store, ids) = store_with(1).await;
    let id = ids[0];
    let before = store.generation();
    store
        .append_logs(id, numbered_lines(id, 1, 3))
        .await
        .unwrap();
    assert_eq!(store.generation(), before);
    store
        .transition(id, None, Status::Cancelled, Changes::default())
        .await
        .unwrap();
    let after = store.generation();
    assert!(after > before);
    // The answer read at the new generation shows the write.
    let build = store.get_build(id).await.unwrap().unwrap();
    assert_eq!(build.status, Status::Cancelled);
    // A refused move commits nothing visible, and may still move it: never back.
    store
        .transition(id, None, Status::Succeeded, Changes::default())
        .await
        .unwrap();
    assert!(store.generation() >= after);
}

#[tokio::test]
async fn a_log_is_read_in_pages_from_a_line_or_from_its_tail() {
    let (_dir, store, ids) = store_with(1).await;
    let id = ids[0];
    for batch in 0..3 {
        store
            .append_logs(id, numbered_lines(id, batch * 1000 + 1, 1000))
            .await
            .unwrap();
    }
    let (lines, pages) = read_all_pages(&store, id, 0).await;
    assert_eq!(lines, numbered_lines(id, 1, 3000).as_ref().clone());
    assert!(pages >= 3, "{pages} pages");
    let start = |since, tail| store.log_start(id, LogRange { since, tail });
    assert_eq!(start(None, None).await.unwrap(), 0);
    assert_eq!(start(Some(7), None).await.unwrap(), 7);
    assert_eq!(start(None, Some(10)).await.unwrap(), 2990);
    assert_eq!(start(None, Some(0)).await.unwrap(), 3000);
    assert_eq!(start(None, Some(5000)).await.unwrap(), 0);
    assert_eq!(start(Some(2995), Some(10)).await.unwrap(), 2995);
    let (tail, _) = read_all_pages(&store, id, 2990).await;
    assert_eq!(tail, numbered_lines(id, 2991, 10).as_ref().clone());
}

#[tokio::test]
async fn a_page_of_long_lines_stops_at_its_byte_limit() {
    let (_dir, store, ids) = store_with(1).await;
    let id = ids[0];
    let long = |seq| LogLine {
        seq,
        line: "x".repeat(10_000),
    };
    store
        .append_logs(id, Arc::new((1..=20).map(long).collect()))
        .await
        .unwrap();
    let page = store
        .read_log_page(id, 0, numbered, PAGE_BYTES)
        .await
        .unwrap()
        .unwrap();
    assert!(page.full);
    assert_eq!((page.text.lines().count(), page.last_seq), (7, 7));
    let (all, pages) = read_all_pages(&store, id, 0).await;
    assert_eq!((all.len(), pages), (20, 3));
}
