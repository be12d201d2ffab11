//! What `dockpub serve` leaves on disk: a data directory only its user can read,
//! and an address file written without following a link planted beside it.
//! The real binary, started by a shell with `umask 022`; no Docker needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `dockpub serve` under `umask 022` in `dir`, data in `dir/data`, its address
/// in `address_file`; returns once the address is there.
fn serve(dir: &Path, address_file: &Path) -> Child {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" serve --bind 127.0.0.1:0 --data-dir data --address-file \"$1\"")
        .arg(env!("CARGO_BIN_EXE_dockpub"))
        .arg(address_file)
        .current_dir(dir)
        .env_remove("DOCKPUB_CONFIG")
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .expect("start dockpub");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(address_file).is_ok_and(|text| text.ends_with('\n')) {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dockpub did not start:\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    child
}

fn stop(mut child: Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dockpub did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The modes of the data directory and its database and lock files.
fn data_modes(data: &Path) -> Vec<(String, u32)> {
    [
        "",
        "dockpub.sqlite3",
        "dockpub.sqlite3-wal",
        "dockpub.sqlite3-shm",
        "dockpub.lock",
    ]
    .iter()
    .map(|name| (name.to_string(), mode(&data.join(name))))
    .collect()
}

fn owner_only(data: &Path) -> Vec<(String, u32)> {
    data_modes(data)
        .into_iter()
        .map(|(name, _)| {
            let wanted = if name.is_empty() { 0o700 } else { 0o600 };
            (name, wanted)
        })
        .collect()
}

#[test]
fn the_data_directory_and_its_database_are_for_dockpubs_user_only_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let address = dir.path().join("address");

    // A first start creates everything.
    let server = serve(dir.path(), &address);
    let url = std::fs::read_to_string(&address).unwrap();
    let health = reqwest::blocking::get(format!("{}/healthz", url.trim())).unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(data_modes(&data), owner_only(&data));
    stop(server);

    // What an earlier version left readable is tightened at the next start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["dockpub.sqlite3", "dockpub.lock"] {
        std::fs::set_permissions(data.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = serve(dir.path(), &address);
    assert_eq!(data_modes(&data), owner_only(&data));
    stop(server);
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("was mode 0755, readable by other users; now 0700"),
        "{log}"
    );
}

#[test]
fn the_address_file_is_written_without_following_a_link_at_the_old_partial_name() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    let address = dir.path().join("address");
    std::os::unix::fs::symlink(&target, dir.path().join(".address.partial")).unwrap();

    let server = serve(dir.path(), &address);
    let written = std::fs::read_to_string(&address).unwrap();
    assert!(
        written.starts_with("http://127.0.0.1:") && written.ends_with('\n'),
        "{written:?}"
    );
    assert!(
        !std::fs::symlink_metadata(&address)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the address file is a link"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    stop(server);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    // Nothing of the write is left behind but the planted link.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    left.sort();
    assert_eq!(left, vec![".address.partial".to_string()]);
}
