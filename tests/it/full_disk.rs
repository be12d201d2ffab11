//! A full disk, survived honestly: the data directory on a small tmpfs this test
//! mounts (it runs as root, as CI does), filled by logging builds, then grown.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{field, unique, with_file, Server, TestEnv};
use serde_json::Value;

const BUILD_TIME: Duration = Duration::from_secs(180);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grow(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], self.path());
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed (this test needs root, as CI has): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn submit(server: &Server, env: &TestEnv, run: &str) -> reqwest::blocking::Response {
    let repository = format!("{}/{}", env.registry, unique("full"));
    let form = field(with_file(env.dockerfile(run)), "repository", &repository);
    server.post_form("/api/v1/builds", field(form, "push", "false"))
}

fn stored_status(db: &Path, id: i64) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT status FROM builds WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .unwrap()
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_full_disk_is_survived_honestly_and_without_a_restart() {
    let env = TestEnv::get();
    let disk = Tmpfs::mount("3m");
    let data: PathBuf = disk.path().join("data");
    let server = Server::start_with(&["--data-dir", data.to_str().unwrap()]);
    let db = data.join("dockpub.sqlite3");

    // Two builds whose logs cannot fit.
    let ids: Vec<i64> = (0..2)
        .map(|_| {
            let response = submit(&server, &env, "seq 1 150000");
            assert_eq!(response.status(), 202);
            response.json::<Value>().unwrap()["id"].as_i64().unwrap()
        })
        .collect();
    // Each ends, and reads show how, whether or not the store could take it: a
    // build whose own records (its image) could not be stored fails and says why.
    let mut ends = Vec::new();
    for &id in &ids {
        let build = server.wait_for(id, BUILD_TIME, |b| {
            !matches!(
                b["status"].as_str(),
                Some("queued" | "building" | "pushing")
            )
        });
        let status = build["status"].as_str().unwrap().to_string();
        let error = build["error"].as_str().unwrap_or_default();
        assert!(
            status == "succeeded" || (status == "failed" && error.contains("disk is full")),
            "{build}"
        );
        ends.push(status);
    }

    // While the disk is full: a clear 507 that names no path, nothing half-written.
    let response = submit(&server, &env, "true");
    assert_eq!(response.status(), 507);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(
        !body.to_string().contains(disk.path().to_str().unwrap()),
        "{body}"
    );
    let ready = server.get("/readyz");
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().unwrap();
    assert!(ready.to_string().contains("disk is full"), "{ready}");

    // Space comes back: everything carries on.
    disk.grow("256m");
    for (&id, end) in ids.iter().zip(&ends) {
        wait_until(Duration::from_secs(30), "the end is stored", || {
            stored_status(&db, id) == *end
        });
        assert_eq!(&server.build(id)["status"], end.as_str());
    }
    wait_until(Duration::from_secs(30), "readyz is 200", || {
        server.get("/readyz").status() == 200
    });
    // The declaration is written with the next batch the store takes, which
    // may come a little after readiness under load.
    wait_until(
        Duration::from_secs(30),
        "a log declares its lost lines",
        || {
            ids.iter().any(|&id| {
                server
                    .logs(id)
                    .contains("log lines are missing here: the data directory's disk was full")
            })
        },
    );
    let response = submit(&server, &env, "echo after");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().unwrap()["id"].as_i64().unwrap();
    assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let staged = std::fs::read_dir(data.join("uploads")).unwrap().count();
    assert_eq!(staged, 0, "an upload was left behind");
}

/// Fills the file system of `dir` with one file, until it takes no more bytes.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while file.write_all(&block).is_ok() {}
    let _ = file.write_all(&[0u8; 512]);
    let _ = file.sync_all();
    path
}

#[test]
fn the_queue_moves_again_by_itself_once_the_disk_has_room() {
    let env = TestEnv::get();
    let disk = Tmpfs::mount("8m");
    let data: PathBuf = disk.path().join("data");
    let server = Server::start_with(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--max-concurrent-builds",
        "1",
    ]);
    // A holds the only slot; B waits behind it.
    let a = submit(&server, &env, "sleep 6 && echo a-done");
    assert_eq!(a.status(), 202);
    let a = a.json::<Value>().unwrap()["id"].as_i64().unwrap();
    server.wait_for(a, BUILD_TIME, |b| b["status"] == "building");
    let b = submit(&server, &env, "echo b-ran");
    assert_eq!(b.status(), 202);
    let b = b.json::<Value>().unwrap()["id"].as_i64().unwrap();

    // The disk fills while A runs: A cannot record its image and fails, its
    // slot comes free, and the dispatcher cannot claim B from the full store.
    let filler = fill(disk.path());
    let a_end = server.wait_for(a, BUILD_TIME, |b| {
        !matches!(b["status"].as_str(), Some("building" | "pushing"))
    });
    assert_eq!(a_end["status"], "failed", "{a_end}");
    // /readyz says the queue cannot be read, not just that the disk is full.
    wait_until(
        Duration::from_secs(60),
        "readyz names the dispatcher",
        || {
            let ready = server.get("/readyz");
            ready.status() == 503 && ready.text().unwrap().contains("dispatcher")
        },
    );
    assert_eq!(server.build(b)["status"], "queued");

    // Room again, and nothing else happens (no submit, no cancel): B starts.
    std::fs::remove_file(filler).unwrap();
    let b_end = server.wait_final(b, BUILD_TIME);
    assert_eq!(b_end["status"], "succeeded", "{b_end}");
    assert!(server.logs(b).contains("b-ran"));
    wait_until(Duration::from_secs(30), "readyz is 200", || {
        server.get("/readyz").status() == 200
    });
}
