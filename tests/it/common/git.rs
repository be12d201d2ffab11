//! Git servers for the tests that build from git: repositories made with real
//! `git`, served by `git daemon` (git://) and by `git http-backend` behind
//! lighttpd with basic auth (smart HTTP).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Server, TestEnv};

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository with three commits on `main`, an annotated tag `v1` on the
/// second, and the context in `app/`, whose `.dockerignore` drops `secret.txt`.
pub struct Repo {
    pub path: PathBuf,
    pub first: String,
    pub tagged: String,
    pub tip: String,
}

pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

pub fn commit(dir: &Path, version: &str) -> String {
    write(dir, "app/version.txt", version);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", version]);
    git(dir, &["rev-parse", "HEAD"])
}

pub fn make_repo(root: &Path, env: &TestEnv) -> Repo {
    let path = root.join("app.git");
    std::fs::create_dir_all(&path).unwrap();
    git(&path, &["init", "-q", "-b", "main"]);
    git(&path, &["config", "user.email", "test@example.com"]);
    git(&path, &["config", "user.name", "test"]);
    let base = &env.base_image;
    write(
        &path,
        "app/Dockerfile",
        &format!("FROM {base}\nCOPY . /ctx\n"),
    );
    write(
        &path,
        "Dockerfile",
        &format!("FROM {base}\nCOPY app/version.txt /root-version\n"),
    );
    let first = commit(&path, "one");
    write(&path, "app/.dockerignore", "secret.txt\n");
    write(&path, "app/secret.txt", "do not ship");
    let tagged = commit(&path, "two");
    git(&path, &["tag", "-a", "v1", "-m", "v1"]);
    let tip = commit(&path, "three");
    Repo {
        path,
        first,
        tagged,
        tip,
    }
}

/// `git daemon` serving `base` on a free loopback port; stopped when dropped.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        // `git-daemon` itself: `git daemon` would run it as a child of its own,
        // which outlives the `git` that Drop kills.
        let daemon = Path::new(&git(base, &["--exec-path"])).join("git-daemon");
        let child = Command::new(daemon)
            .args([
                "--reuseaddr",
                "--export-all",
                "--informative-errors",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_listening(port, "git daemon");
        GitDaemon { child, port }
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn server_with(config: &str) -> (tempfile::TempDir, Server) {
    server_with_env(config, &[])
}

/// As [`server_with`], with these variables in dockpub's environment.
pub fn server_with_env(config: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let server = Server::start_with_env(&["--config", path.to_str().unwrap()], env);
    (dir, server)
}

/// Commits, on a new branch `branch` of `repo`, a submodule at `path` whose
/// `.gitmodules` URL is `url` (the gitlink names `commit`; nothing is cloned).
pub fn commit_submodule(repo: &Path, branch: &str, path: &str, url: &str, commit: &str) {
    git(repo, &["checkout", "-q", "-B", branch, "main"]);
    let name = format!("submodule.{path}");
    git(
        repo,
        &["config", "-f", ".gitmodules", &format!("{name}.path"), path],
    );
    git(
        repo,
        &["config", "-f", ".gitmodules", &format!("{name}.url"), url],
    );
    let gitlink = format!("160000,{commit},{path}");
    git(repo, &["update-index", "--add", "--cacheinfo", &gitlink]);
    git(repo, &["add", ".gitmodules"]);
    git(repo, &["commit", "-q", "-m", branch]);
    git(repo, &["checkout", "-q", "main"]);
}

/// `git http-backend` behind lighttpd on a free loopback port: every
/// repository under `base` at `/git/NAME`, only for `user`:`password` (basic
/// auth from an htpasswd file). Stopped when dropped.
pub struct SmartHttp {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl SmartHttp {
    pub fn start(base: &Path, user: &str, password: &str) -> SmartHttp {
        let lighttpd = Path::new("/usr/sbin/lighttpd");
        assert!(
            lighttpd.exists(),
            "lighttpd is missing: run scripts/test, which installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbc", htpasswd.to_str().unwrap(), user, password])
            .output()
            .expect("htpasswd");
        assert!(made.status.success(), "htpasswd: {made:?}");
        let exec_path = git(base, &["--exec-path"]);
        let port = free_port();
        let config = format!(
            r#"server.modules = ("mod_alias", "mod_setenv", "mod_auth", "mod_authn_file", "mod_cgi")
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{base}"
server.errorlog = "{log}"
alias.url = ("/git/" => "{exec_path}/git-http-backend/")
$HTTP["url"] =~ "^/git/" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{base}", "GIT_HTTP_EXPORT_ALL" => "")
  auth.backend = "htpasswd"
  auth.backend.htpasswd.userfile = "{htpasswd}"
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
"#,
            base = base.display(),
            log = dir.path().join("error.log").display(),
            htpasswd = htpasswd.display(),
        );
        let config_path = dir.path().join("lighttpd.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(lighttpd)
            .arg("-D")
            .arg("-f")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lighttpd");
        wait_listening(port, "lighttpd");
        SmartHttp {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/git/{name}", self.port)
    }
}

impl Drop for SmartHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// sshd on a free loopback port that lets root in with one key only; git's
/// repositories are reached as `ssh://root@127.0.0.1:PORT/ABSOLUTE/PATH`.
/// Stopped when dropped.
pub struct SshServer {
    child: Child,
    pub port: u16,
    /// The client's private key, and a known_hosts file naming the server's key.
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    dir: tempfile::TempDir,
}

impl SshServer {
    pub fn start() -> SshServer {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "sshd is missing: run scripts/test, which installs openssh-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let path = dir.path().join(name);
            let made = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .output()
                .expect("ssh-keygen");
            assert!(made.status.success(), "ssh-keygen: {made:?}");
            path
        };
        let host_key = keygen("host_key");
        let client_key = keygen("client_key");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
        let port = free_port();
        let host_public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_public}")).unwrap();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PidFile {}\n",
                host_key.display(),
                authorized.display(),
                dir.path().join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // sshd wants its privilege separation folder.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        wait_listening(port, "sshd");
        SshServer {
            child,
            port,
            client_key,
            known_hosts,
            dir,
        }
    }

    pub fn url(&self, repository: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, repository.display())
    }

    /// A known_hosts file that names another key for this server.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let other = self.dir.path().join("other_key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .output()
            .expect("ssh-keygen");
        assert!(made.status.success());
        let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
        let path = self.dir.path().join("wrong_known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {public}", self.port)).unwrap();
        path
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
