//! The web page in a real headless Chromium, driven over WebDriver: submit through
//! the form, follow a build to `succeeded`, cancel a slow one, delete it, with no
//! console errors along the way. Saves the screenshot the README shows.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{unique, Server, TestEnv, PROVENANCE_VARIABLE};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const BUILD_TIME: Duration = Duration::from_secs(180);
/// Where the README's screenshot lives; rewritten only when asked
/// (DOCKPUB_UPDATE_SCREENSHOT=1), so a test run leaves the work tree clean.
const README_SCREENSHOT: &str = "docs/screenshot.png";
const SCREENSHOT: &str = "target/web-page.png";

/// chromedriver on a free loopback port, stopped when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start chromedriver ({err}): run the tests through scripts/test, which installs chromium and chromium-driver")
            });
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        driver.wait_ready();
        driver
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::blocking::Client::new();
        loop {
            let status = client.get(format!("{}/status", self.url)).send();
            if let Ok(response) = status {
                let body: Value = response.json().unwrap_or_default();
                if body["value"]["ready"] == true {
                    return;
                }
            }
            let exited = self.child.try_wait().expect("chromedriver status");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "chromedriver did not come up on {} (exited: {exited:?})",
                self.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chromium session, used from plain (blocking) test code: each call runs on a
/// runtime of its own, so the harness's blocking HTTP client works in between.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Chromedriver,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let driver = Chromedriver::start();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--window-size=1280,1000",
                ],
            },
            // Lets the test read the browser console through chromedriver.
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&driver.url),
            )
            .expect("a Chromium session from chromedriver");
        let session = runtime
            .block_on(client.session_id())
            .expect("session id")
            .expect("a session id");
        Browser {
            runtime,
            client: Some(client),
            driver,
            session,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|err| panic!("open {url}: {err}"));
    }

    /// Runs `script` in the page and returns what it returns.
    fn js(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, vec![]))
            .unwrap_or_else(|err| panic!("script {script}: {err}"))
    }

    fn text(&self, id: &str) -> String {
        let value = self.js(&format!(
            "const e = document.getElementById('{id}'); return e ? e.textContent : null;"
        ));
        value
            .as_str()
            .unwrap_or_else(|| panic!("no element #{id}"))
            .to_string()
    }

    fn is_shown(&self, id: &str) -> bool {
        let script = format!(
            "const e = document.getElementById('{id}'); return !!e && !e.hidden && e.offsetParent !== null;"
        );
        self.js(&script) == true
    }

    /// Clicks like a user: the element must be there and visible.
    fn click(&self, id: &str) {
        self.runtime
            .block_on(async { self.client().find(Locator::Id(id)).await?.click().await })
            .unwrap_or_else(|err| panic!("click #{id}: {err}"));
    }

    /// Replaces a field's value by typing into it.
    fn type_into(&self, id: &str, text: &str) {
        self.runtime
            .block_on(async {
                let field = self.client().find(Locator::Id(id)).await?;
                field.clear().await?;
                if text.is_empty() {
                    return Ok(());
                }
                field.send_keys(text).await
            })
            .unwrap_or_else(|err| panic!("type into #{id}: {err}"));
    }

    /// Waits until `script` returns something other than null or false.
    fn wait_for(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.js(script);
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {what}; the page says: {}",
                self.js("return document.body.innerText;")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn hash(&self) -> String {
        self.js("return location.hash;")
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The browser console's entries since the last call (chromedriver hands each
    /// one out once).
    fn console(&self) -> Vec<Value> {
        let url = format!("{}/session/{}/se/log", self.driver.url, self.session);
        let response = reqwest::blocking::Client::new()
            .post(url)
            .json(&json!({ "type": "browser" }))
            .send()
            .expect("read the browser log");
        let body: Value = response.json().expect("browser log JSON");
        body["value"].as_array().cloned().unwrap_or_default()
    }

    fn console_errors(&self) -> Vec<Value> {
        self.console()
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
            .collect()
    }

    fn screenshot(&self, width: u32, height: u32, path: &Path) {
        let png = self.runtime.block_on(async {
            self.client().set_window_size(width, height).await?;
            // Let the layout settle at the new size.
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.client().screenshot().await
        });
        let png = png.expect("screenshot");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
    }
}

fn log_at_bottom(browser: &Browser) -> bool {
    let script = "const log = document.getElementById('log');
        return log.scrollTop + log.clientHeight >= log.scrollHeight - 2;";
    browser.js(script) == true
}

/// A browser console entry's text.
fn message(entry: &Value) -> &str {
    entry["message"].as_str().unwrap_or_default()
}

/// The id of the build the page shows, from its `#/builds/N` address.
fn shown_build(browser: &Browser) -> i64 {
    let hash = browser.hash();
    hash.strip_prefix("#/builds/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the page shows no build (address {hash})"))
}

/// Clicks a button that starts a build and returns the build the page then opens.
fn click_to_new_build(browser: &Browser, button: &str) -> i64 {
    let before = browser.hash();
    browser.click(button);
    browser.wait_for(
        &format!("a new build to open after #{button}"),
        Duration::from_secs(10),
        &format!(
            "return location.hash !== '{before}' && /^#\\/builds\\/\\d+$/.test(location.hash);"
        ),
    );
    shown_build(browser)
}

fn wait_for_status(browser: &Browser, status: &str, limit: Duration) {
    browser.wait_for(
        &format!("status {status}"),
        limit,
        &format!("return document.getElementById('build-status').textContent === '{status}';"),
    );
}

#[test]
fn the_page_submits_follows_cancels_and_deletes_builds() {
    let env = TestEnv::get();
    let server = Server::start();
    let browser = Browser::start();

    browser.goto(&server.url("/"));
    assert_eq!(browser.js("return document.title;"), "dockpub");
    // The console check below is only worth something if errors do reach it.
    browser.js("console.error('console-probe');");
    let probe = browser.console_errors();
    assert!(
        probe.iter().any(|e| message(e).contains("console-probe")),
        "the browser console is not readable: {probe:?}"
    );
    assert!(
        probe.len() == 1,
        "console errors while loading the page: {probe:?}"
    );

    // The builders panel: the one builder, up, with its slots.
    let builder = browser.wait_for(
        "the builders panel",
        Duration::from_secs(20),
        "const li = document.querySelector('#builder-list li[data-builder=\"local\"]'); \
         return li && li.textContent.includes('up') ? li.textContent : null;",
    );
    assert!(builder.as_str().unwrap().contains("running"), "{builder}");

    // 1. A Dockerfile chosen as a file; its 20 MB layer makes the push long enough
    // to report progress on the way.
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        env.dockerfile("echo web-page-says-hello && head -c 20000000 /dev/urandom > /blob"),
    )
    .unwrap();
    let repository = format!("{}/{}", env.registry, unique("web"));
    browser.type_into("dockerfile-file", dockerfile.to_str().unwrap());
    browser.type_into("repository", &repository);
    browser.type_into("tags", "v1, latest");
    let built = click_to_new_build(&browser, "submit-button");
    wait_for_status(&browser, "succeeded", BUILD_TIME);
    let record = server.build(built);
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["tags"], json!(["v1", "latest"]));
    assert!(browser
        .text("build-facts")
        .contains(record["digest"].as_str().unwrap()));
    assert!(browser.text("log").contains("web-page-says-hello"));
    assert!(log_at_bottom(&browser), "the log does not follow");
    // BuildKit's steps (vertexes) done of those known: all of them at the end.
    let steps = browser.text("step-value");
    let counts: Vec<&str> = steps
        .strip_prefix("step ")
        .and_then(|rest| rest.split_once(" of "))
        .map(|(done, total)| vec![done, total])
        .unwrap_or_else(|| panic!("not a step count: {steps}"));
    assert_eq!(counts[0], counts[1], "{steps}");
    assert!(counts[1].parse::<u32>().unwrap() >= 2, "{steps}");
    let bytes_bar = browser.js("const bar = document.getElementById('bytes-bar');
         return { now: Number(bar.getAttribute('aria-valuenow')),
                  max: Number(bar.getAttribute('aria-valuemax')),
                  width: bar.firstChild.style.width,
                  full: bar.classList.contains('full') };");
    assert!(
        bytes_bar["full"] == true
            && bytes_bar["width"] == "100%"
            && bytes_bar["now"] == bytes_bar["max"]
            && bytes_bar["max"].as_f64().unwrap() >= 20e6,
        "the bytes bar is not full of the pushed bytes: {bytes_bar}"
    );
    let layers = browser.text("layers-value");
    assert!(
        layers.ends_with(" layers") && {
            let counts: Vec<&str> = layers.trim_end_matches(" layers").split(" of ").collect();
            counts.len() == 2 && counts[0] == counts[1]
        },
        "layers: {layers}"
    );
    // The list, updated live, shows the same.
    browser.wait_for(
        "the list to show the build succeeded",
        Duration::from_secs(10),
        &format!("const row = document.querySelector('#build-list li[data-id=\"{built}\"] .badge'); return !!row && row.textContent === 'succeeded';"),
    );
    assert!(browser.is_shown("retry-button") && browser.is_shown("delete-button"));
    assert!(!browser.is_shown("cancel-button"));

    // 2. The API's refusal, in words.
    browser.js("location.hash = '#/';");
    browser.type_into("dockerfile-text", &env.dockerfile("true"));
    browser.js("document.getElementById('dockerfile-file').value = '';");
    browser.type_into("repository", "Not A Repository!");
    browser.click("submit-button");
    let refusal = browser.wait_for(
        "the refusal",
        Duration::from_secs(10),
        "const e = document.getElementById('submit-error'); return e.hidden ? null : e.textContent;",
    );
    assert!(
        refusal
            .as_str()
            .unwrap()
            .starts_with("The build was not accepted: ")
            && refusal.as_str().unwrap().contains("Not A Repository!"),
        "{refusal}"
    );
    // Build args go out only when filled. A server without them refuses the
    // field, which the page says in words; one with them takes the build.
    browser.type_into(
        "repository",
        &format!("{}/{}", env.registry, unique("web-args")),
    );
    browser.click("more-options");
    browser.type_into("build-args", "GREETING=hello");
    browser.click("submit-button");
    let outcome = browser.wait_for(
        "the build args to be refused or taken",
        Duration::from_secs(10),
        "const e = document.getElementById('submit-error');
         if (!e.hidden && e.textContent.includes('build_arg')) return e.textContent;
         return /^#\\/builds\\/\\d+$/.test(location.hash) ? 'accepted' : null;",
    );
    let outcome = outcome.as_str().unwrap();
    assert!(
        outcome == "accepted" || outcome.contains("does not accept that field yet"),
        "{outcome}"
    );
    browser.type_into("build-args", "");
    // The refused requests are the only thing the console may show here.
    let errors = browser.console_errors();
    assert!(
        errors
            .iter()
            .all(|e| message(e).contains("the server responded with a status of 400")),
        "console errors: {errors:?}"
    );

    // 3. A slow build, pasted as text, cancelled from the page. It prints for a
    // while first: the log follows it until the reader scrolls up.
    browser.type_into(
        "dockerfile-text",
        &env.dockerfile(
            "for i in $(seq 1 60); do echo line-$i; sleep 0.1; done; echo sleeping; sleep 60",
        ),
    );
    browser.type_into(
        "repository",
        &format!("{}/{}", env.registry, unique("web-slow")),
    );
    browser.type_into("tags", "");
    let slow = click_to_new_build(&browser, "submit-button");
    browser.wait_for(
        "the log to fill its box",
        BUILD_TIME,
        "const log = document.getElementById('log');
         return log.textContent.includes('line-35') && log.scrollHeight > log.clientHeight;",
    );
    assert!(log_at_bottom(&browser), "the log does not follow");
    browser.js("document.getElementById('log').scrollTop = 0;");
    browser.wait_for(
        "the slow build to reach its sleep",
        BUILD_TIME,
        "return document.getElementById('log').textContent.includes('sleeping');",
    );
    assert_eq!(
        browser.js("return document.getElementById('log').scrollTop;"),
        0,
        "the log pulled the reader down"
    );
    browser.click("log-bottom");
    assert!(log_at_bottom(&browser));
    assert_eq!(browser.text("build-status"), "building");
    assert!(!browser.is_shown("delete-button"));
    let clicked = Instant::now();
    browser.click("cancel-button");
    wait_for_status(&browser, "cancelled", Duration::from_secs(30));
    assert!(clicked.elapsed() < Duration::from_secs(30));
    assert_eq!(server.build(slow)["status"], "cancelled");

    // 4. Delete it, confirming on the page.
    browser.click("delete-button");
    browser.click("delete-yes");
    browser.wait_for(
        "the deleted build to leave the page",
        Duration::from_secs(10),
        &format!("return location.hash === '#/' && !document.querySelector('#build-list li[data-id=\"{slow}\"]');"),
    );
    assert!(browser.text("notice").contains(&format!("#{slow} deleted")));
    assert_eq!(server.get(&format!("/api/v1/builds/{slow}")).status(), 404);

    // 5. Retry the first build from its page: a new build, followed from the start.
    browser.js(&format!("location.hash = '#/builds/{built}';"));
    wait_for_status(&browser, "succeeded", Duration::from_secs(10));
    let retried = click_to_new_build(&browser, "retry-button");
    wait_for_status(&browser, "succeeded", BUILD_TIME);
    assert_eq!(server.build(retried)["retry_of"], built);
    assert!(browser
        .text("build-facts")
        .contains(&format!("Retry of#{built}")));
    browser.wait_for(
        "the log to end",
        Duration::from_secs(10),
        "return document.getElementById('log-state').textContent === '';",
    );

    // 6. The screenshot the README shows: the first build, with the push progress
    // the page saw (the retry's layers were all in the registry already).
    browser.js(&format!("location.hash = '#/builds/{built}';"));
    wait_for_status(&browser, "succeeded", Duration::from_secs(10));
    assert!(browser.text("bytes-value").contains(" MB of "));
    browser.wait_for(
        "the log to load and the notice to go",
        Duration::from_secs(10),
        "return document.getElementById('log-state').textContent === ''
             && document.getElementById('notice').textContent === '';",
    );
    browser.js("document.getElementById('more-options').open = false;
         document.activeElement.blur();
         window.scrollTo(0, 0);");
    browser.screenshot(1280, 1000, Path::new(SCREENSHOT));
    if std::env::var_os("DOCKPUB_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(SCREENSHOT, README_SCREENSHOT).expect("update the README's screenshot");
    }
    // The phone width is looked at by people, not committed.
    browser.screenshot(390, 2400, Path::new("target/web-page-phone.png"));

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn the_page_asks_for_the_token_and_sends_the_saved_one() {
    let env = TestEnv::get();
    let server = Server::start_with(&["--api-tokens", "page-token-1234"]);
    let browser = Browser::start();
    browser.goto(&server.url("/"));
    let refusal = browser.wait_for(
        "the refusal, in words",
        Duration::from_secs(10),
        "const e = document.getElementById('list-error');
         return !e.hidden && e.textContent.includes('API token') ? e.textContent : null;",
    );
    assert!(
        refusal.as_str().unwrap().contains("401") || refusal.as_str().unwrap().contains("Bearer"),
        "{refusal}"
    );

    browser.type_into("token", "page-token-1234");
    browser.js("document.getElementById('token-form').requestSubmit();");
    browser.wait_for(
        "the list to load with the token",
        Duration::from_secs(10),
        "return document.getElementById('list-error').hidden || null;",
    );
    // Saved in the browser: a reload still sends it, and a build goes through.
    browser.goto(&server.url("/"));
    assert_eq!(
        browser.js("return document.getElementById('token').value;"),
        "page-token-1234"
    );
    browser.type_into("dockerfile-text", &env.dockerfile("echo with-a-token"));
    browser.type_into(
        "repository",
        &format!("{}/{}", env.registry, unique("web-token")),
    );
    let id = click_to_new_build(&browser, "submit-button");
    wait_for_status(&browser, "succeeded", BUILD_TIME);
    let stored = server
        .client
        .get(server.url(&format!("/api/v1/builds/{id}")))
        .bearer_auth("page-token-1234")
        .send()
        .unwrap();
    assert_eq!(
        stored.json::<serde_json::Value>().unwrap()["status"],
        "succeeded"
    );
}

/// `git` in `dir`, with no user or system config.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_page_shows_a_git_builds_source() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("Dockerfile"), env.dockerfile("true")).unwrap();
    git_in(&repo, &["init", "-q", "-b", "main"]);
    git_in(&repo, &["add", "-A"]);
    git_in(&repo, &["commit", "-q", "-m", "one"]);
    let commit = git_in(&repo, &["rev-parse", "HEAD"]);
    let config = dir.path().join("config.toml");
    let url = format!("file://{}", repo.display());
    let trigger = format!(
        "allow_file_git = true\n[[triggers]]\nname = \"web\"\ngit = \"{url}\"\n\
         refs = [\"refs/heads/*\"]\nrepository = \"{}/{}\"\npush = false\n\
         secret_env = \"DOCKPUB_TEST_WEB_HOOK\"\n",
        env.registry,
        unique("web-trigger")
    );
    std::fs::write(&config, trigger).unwrap();
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[("DOCKPUB_TEST_WEB_HOOK", "s")],
    );
    let form = reqwest::blocking::multipart::Form::new()
        .text("git", url.clone())
        .text("git_ref", "main")
        .text("push", "false")
        .text(
            "repository",
            format!("{}/{}", env.registry, unique("web-git")),
        );
    let id = server.submit(form);
    assert_eq!(server.wait_final(id, BUILD_TIME)["status"], "succeeded");

    let browser = Browser::start();
    browser.goto(&server.url(&format!("/#/builds/{id}")));
    let short = &commit[..12];
    let facts = browser.wait_for(
        "the build's source",
        Duration::from_secs(20),
        &format!(
            "const t = document.getElementById('build-facts').innerText; \
             return t.includes('{short}') ? t : null;"
        ),
    );
    assert!(
        facts
            .as_str()
            .unwrap()
            .contains(&format!("{url} main @ {short}")),
        "{facts}"
    );
    // Only an https URL is a link.
    let linked = browser.js(&format!(
        "return [...document.querySelectorAll('#build-facts a')]\
         .some(a => a.textContent.includes('{short}'));"
    ));
    assert_eq!(linked, false);

    // A trigger's build says which trigger started it.
    let run = reqwest::blocking::Client::new()
        .post(server.url("/api/v1/triggers/web/run"))
        .json(&serde_json::json!({"ref": "main"}))
        .send()
        .unwrap();
    assert_eq!(run.status(), 202);
    let run_id = run.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    browser.goto(&server.url(&format!("/#/builds/{run_id}")));
    let facts = browser.wait_for(
        "the build's trigger",
        Duration::from_secs(20),
        "const t = document.getElementById('build-facts').innerText; \
         return t.includes('web, run by hand') ? t : null;",
    );
    assert!(
        facts.as_str().unwrap().contains("refs/heads/main"),
        "{facts}"
    );
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// A GitHub push event of `git_ref` at `commit`, signed with `secret`.
fn signed_push(git_ref: &str, commit: &str, secret: &str) -> (Vec<(String, String)>, Vec<u8>) {
    use hmac::{Hmac, Mac};
    let body = json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": commit,
        "created": false, "deleted": false,
        "head_commit": {"id": commit, "message": "one"},
        "repository": {"full_name": "team/app"},
    })
    .to_string()
    .into_bytes();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let headers = vec![
        ("X-GitHub-Event".into(), "push".into()),
        ("X-GitHub-Delivery".into(), unique("delivery")),
        ("X-Hub-Signature-256".into(), format!("sha256={signature}")),
    ];
    (headers, body)
}

/// A webhook receiver that answers 204 to everything; its URL.
fn hook_receiver() -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 65536];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    url
}

#[test]
fn the_page_builds_from_git_with_its_options_and_runs_a_trigger() {
    let env = TestEnv::get();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    // The form's build names this Dockerfile, where only the `base` target
    // succeeds; its step prints the build arg. The trigger builds `Dockerfile`.
    std::fs::write(
        repo.join("multi.dockerfile"),
        format!(
            "FROM {} AS base\nARG GREETING\nRUN echo \"stage-base-$GREETING\"\nFROM base AS final\nRUN false\n",
            env.base_image
        ),
    )
    .unwrap();
    std::fs::write(repo.join("Dockerfile"), env.dockerfile("true")).unwrap();
    git_in(&repo, &["init", "-q", "-b", "main"]);
    git_in(&repo, &["add", "-A"]);
    git_in(&repo, &["commit", "-q", "-m", "one"]);
    let commit = git_in(&repo, &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.display());
    let hook = hook_receiver();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "allow_file_git = true\nallowed_callback_hosts = [\"127.0.0.1\"]\n\
             callback_secret_env = \"DOCKPUB_TEST_WEB_CALLBACK\"\n\
             [[triggers]]\nname = \"web\"\ngit = \"{url}\"\nrefs = [\"refs/heads/*\"]\n\
             repository = \"{}/{}\"\npush = false\nsecret_env = \"DOCKPUB_TEST_WEB_HOOK\"\n",
            env.registry,
            unique("web-trigger")
        ),
    )
    .unwrap();
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[
            ("DOCKPUB_TEST_WEB_HOOK", "hook-secret"),
            ("DOCKPUB_TEST_WEB_CALLBACK", "callback-secret"),
        ],
    );
    let browser = Browser::start();
    browser.goto(&server.url("/"));
    browser.wait_for(
        "the trigger to be listed",
        Duration::from_secs(10),
        "return document.querySelector('[data-trigger=\"web\"]') !== null;",
    );
    let trigger_text = || {
        browser
            .js("return document.querySelector('[data-trigger=\"web\"]').innerText;")
            .as_str()
            .unwrap()
            .to_string()
    };
    let listed = trigger_text();
    assert!(
        listed.contains("refs/heads/*") && listed.contains(&url),
        "{listed}"
    );
    assert!(listed.contains("Last delivery\nnone yet"), "{listed}");

    // 1. A build from git, with every option the form has.
    browser.click("source-git");
    assert!(browser.is_shown("git-url") && !browser.is_shown("dockerfile-text"));
    browser.type_into("git-url", &url);
    browser.type_into("git-ref", "main");
    let repository = format!("{}/{}", env.registry, unique("web-git-form"));
    browser.type_into("repository", &repository);
    browser.click("push");
    browser.click("more-options");
    browser.type_into("build-args", "GREETING=from-the-page");
    browser.type_into("labels", "org.example.team=web");
    browser.type_into("target", "base");
    browser.type_into("dockerfile-path", "multi.dockerfile");
    browser.type_into("platform", "linux/amd64");
    browser.click("no-cache");
    browser.type_into("callback-url", &hook);
    browser.js("document.getElementById('more-options').scrollIntoView();");
    browser.screenshot(390, 900, Path::new("target/web-options-phone.png"));
    browser.screenshot(1280, 1000, Path::new("target/web-options-desktop.png"));
    let id = click_to_new_build(&browser, "submit-button");
    wait_for_status(&browser, "succeeded", BUILD_TIME);
    let build = server.build(id);
    let options = &build["options"];
    assert_eq!(options["target"], "base", "{build}");
    assert_eq!(options["dockerfile"], "multi.dockerfile", "{build}");
    assert!(
        options["platform"].to_string().contains("linux/amd64"),
        "{build}"
    );
    assert_eq!(options["no_cache"], true, "{build}");
    assert_eq!(options["labels"]["org.example.team"], "web", "{build}");
    assert_eq!(
        options["build_args"]["GREETING"], "from-the-page",
        "{build}"
    );
    assert_eq!(build["push"], false, "{build}");
    assert_eq!(build["source"]["commit"], commit.as_str(), "{build}");
    assert!(server.logs(id).contains("stage-base-from-the-page"));
    let facts = browser.text("build-facts");
    assert!(
        facts.contains("target base") && facts.contains("no cache"),
        "{facts}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let deliveries = server.get_json(&format!("/api/v1/builds/{id}/deliveries"));
        if deliveries["deliveries"][0]["url"] == hook.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "no callback: {deliveries}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 2. The triggers view: a push event becomes its last delivery...
    let (headers, body) = signed_push("refs/heads/main", &commit, "hook-secret");
    let mut event = server
        .client
        .post(server.url("/api/v1/triggers/web/events"));
    for (name, value) in headers {
        event = event.header(name, value);
    }
    let delivered = event.body(body).send().unwrap();
    assert_eq!(delivered.status(), 202);
    let delivered_id = delivered.json::<Value>().unwrap()["id"].as_i64().unwrap();
    browser.wait_for(
        "the delivery in the triggers view",
        Duration::from_secs(10),
        &format!(
            "const t = document.querySelector('[data-trigger=\"web\"]').innerText; \
             return t.includes('{}') && t.includes('#{delivered_id}');",
            &commit[..12]
        ),
    );
    // ... a ref no branch has is refused in words, and "run" builds a ref.
    browser.type_into("run-ref-web", "no-such-branch");
    browser.click("run-button-web");
    browser.wait_for(
        "the refused run's reason",
        Duration::from_secs(20),
        "const e = document.querySelector('[data-trigger=\"web\"] .error'); \
         return !e.hidden && e.textContent.includes('no-such-branch');",
    );
    // The refused run is the only thing the console may show so far.
    let errors = browser.console_errors();
    assert!(
        errors
            .iter()
            .all(|e| message(e).contains("triggers/web/run") && message(e).contains("status of 4")),
        "console errors: {errors:?}"
    );
    browser.type_into("run-ref-web", "main");
    let run = click_to_new_build(&browser, "run-button-web");
    assert_ne!(run, delivered_id);
    wait_for_status(&browser, "succeeded", BUILD_TIME);
    assert!(browser.text("build-facts").contains("web, run by hand"));
    browser.wait_for(
        "the run as the trigger's last build",
        Duration::from_secs(10),
        &format!(
            "return document.querySelector('[data-trigger=\"web\"]').innerText.includes('Last build\\n#{run}');"
        ),
    );
    assert!(
        !browser.is_shown("log-note"),
        "a build that ran has its log"
    );

    browser.js("document.getElementById('more-options').open = false; window.scrollTo(0, 0);");
    browser.click("source-git");
    browser.screenshot(1280, 1800, Path::new("target/web-git-form-desktop.png"));
    browser.screenshot(390, 900, Path::new("target/web-git-form-phone.png"));
    browser.js("document.getElementById('triggers-heading').scrollIntoView();");
    browser.screenshot(390, 900, Path::new("target/web-triggers-phone.png"));
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn a_build_that_never_started_says_why_instead_of_an_empty_log() {
    let env = TestEnv::offline();
    // A server whose only builder does not exist: a build waits, then fails.
    let server = Server::in_process(&["--max-queue-wait-secs", "3"]);
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(env.dockerfile("true").into_bytes())
                .file_name("Dockerfile"),
        )
        .text(
            "repository",
            format!("{}/{}", env.registry, unique("web-wait")),
        );
    let id = server.submit(form);
    let browser = Browser::start();
    browser.goto(&server.url(&format!("/#/builds/{id}")));
    let waiting = browser.wait_for(
        "the page to say what the build waits for, or why it failed",
        Duration::from_secs(10),
        "const n = document.getElementById('log-note'); return n.hidden ? null : n.textContent;",
    );
    let waiting = waiting.as_str().unwrap().to_string();
    assert!(
        waiting.contains("no builder up") || waiting.contains("never started"),
        "{waiting}"
    );
    wait_for_status(&browser, "failed", Duration::from_secs(30));
    let note = browser.text("log-note");
    assert!(
        note.contains("never started") && note.contains("max_queue_wait_secs"),
        "{note}"
    );
    assert!(browser.is_shown("log-note") && !browser.is_shown("log"));
    browser.js("window.scrollTo(0, 0);");
    browser.screenshot(
        1280,
        1000,
        Path::new("target/web-never-started-desktop.png"),
    );
    browser.screenshot(390, 2400, Path::new("target/web-never-started-phone.png"));
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[test]
fn the_page_shows_each_platforms_phase_image_and_the_index_digest() {
    let env = TestEnv::get();
    let base = std::env::var("DOCKPUB_TEST_PLATFORM_BASE")
        .expect("DOCKPUB_TEST_PLATFORM_BASE: run the tests through scripts/test");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let host = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    std::fs::write(
        &config,
        format!(
            "[[builders]]\nname = \"local\"\nhost = \"{host}\"\n\
             platforms = [\"linux/amd64\", \"linux/arm64\"]\n"
        ),
    )
    .unwrap();
    // With provenance: the page shows the statement's digest.
    let server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &[(PROVENANCE_VARIABLE, "true")],
    );
    // Started first, so the page is open while both platforms build.
    let browser = Browser::start();
    let dockerfile = format!(
        "FROM {base}\nRUN sleep 6 && echo {} > /id\n",
        unique("web-platforms")
    );
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "file",
            reqwest::blocking::multipart::Part::bytes(dockerfile.into_bytes())
                .file_name("Dockerfile"),
        )
        .text("platform", "linux/amd64,linux/arm64")
        .text(
            "repository",
            format!("{}/{}", env.registry, unique("web-platforms")),
        );
    let id = server.submit(form);
    browser.goto(&server.url(&format!("/#/builds/{id}")));
    // Each platform's phase and builder as it builds, then each done.
    let phases = |phase: &str| {
        format!(
            "const list = document.getElementById('platform-progress'); \
             const items = [...list.querySelectorAll('li')]; \
             return !list.hidden && items.length === 2 \
               && items.every(li => li.dataset.phase === '{phase}') ? list.innerText : null;"
        )
    };
    let building = browser.wait_for("both platforms building", BUILD_TIME, &phases("building"));
    let building = building.as_str().unwrap();
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(building.contains(platform), "{building}");
    }
    assert!(building.contains("building on local"), "{building}");
    let done = browser.wait_for("both platforms done", BUILD_TIME, &phases("done"));
    assert!(done.as_str().unwrap().contains("layers pushed"), "{done}");
    let build = server.wait_final(id, BUILD_TIME);
    assert_eq!(build["status"], "succeeded", "{build}");
    let facts = browser.wait_for(
        "the build's platforms",
        Duration::from_secs(20),
        "const t = document.getElementById('build-facts').innerText; \
         return t.includes('linux/arm64') && t.includes('Index digest') ? t : null;",
    );
    let facts = facts.as_str().unwrap();
    assert!(facts.contains(build["digest"].as_str().unwrap()), "{facts}");
    for platform in build["platforms"].as_array().unwrap() {
        assert!(
            facts.contains(platform["digest"].as_str().unwrap()),
            "{facts}"
        );
        assert!(
            facts.contains(platform["image_id"].as_str().unwrap()),
            "{facts}"
        );
    }
    let provenance = build["provenance"]["digest"].as_str().unwrap();
    assert!(facts.contains(provenance), "{facts}");
    assert!(facts.contains("unsigned"), "{facts}");
    assert!(
        browser.console_errors().is_empty(),
        "{:?}",
        browser.console_errors()
    );
}
