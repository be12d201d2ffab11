//! Completion webhooks against a real receiver on loopback: signatures, retries
//! with one delivery id, a kill -9 between attempts, refused callback hosts, and
//! a receiver that never answers.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::common::{field, unique, with_file, Server, TestEnv};

const BUILD_TIME: Duration = Duration::from_secs(120);
const SECRET_VAR: &str = "DOCKPUB_TEST_WEBHOOK_SECRET";
const CALLBACK_SECRET_VAR: &str = "DOCKPUB_TEST_CALLBACK_SECRET";
/// The attempt timeout dockpub uses.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the receiver answers one request.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A tiny HTTP server: answers with the scripted statuses in turn, then `then`.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: &[Answer], then: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let log = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (log, script) = (log.clone(), script.clone());
                std::thread::spawn(move || serve_one(stream, &log, &script, then));
            }
        });
        Receiver { port, received }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits until `n` requests came in; panics after `limit`.
    fn wait_for(&self, n: usize, limit: Duration) -> std::sync::MutexGuard<'_, Vec<Received>> {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.received.lock().unwrap()
    }
}

fn serve_one(
    stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    script: &Mutex<VecDeque<Answer>>,
    then: Answer,
) {
    let mut reader = BufReader::new(stream);
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .map_or(0, |l| l.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    log.lock().unwrap().push(Received { headers, body });
    let answer = script.lock().unwrap().pop_front().unwrap_or(then);
    let mut stream = reader.into_inner();
    match answer {
        Answer::Status(status) => {
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(reply.as_bytes());
        }
        Answer::Hang => std::thread::sleep(Duration::from_secs(3600)),
    }
}

/// Verifies as the README tells a receiver to: HMAC-SHA256 of
/// "TIMESTAMP.DELIVERY_ID.BODY", and a timestamp within five minutes of now.
fn assert_signed(secret: &str, received: &Received) {
    let timestamp = received.header("x-dockpub-timestamp");
    let sent: i64 = timestamp
        .parse()
        .expect("X-Dockpub-Timestamp is Unix seconds");
    assert!(
        (chrono::Utc::now().timestamp() - sent).abs() < 300,
        "{timestamp}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{}.", received.header("x-dockpub-delivery")).as_bytes());
    mac.update(&received.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(received.header("x-dockpub-signature-256"), expected);
}

/// A dockpub with one `[[webhooks]]` entry for `url` and these extra config lines.
struct Setup {
    server: Server,
    secret: String,
    callback_secret: String,
    _config_dir: tempfile::TempDir,
}

fn start(url: &str, events: &str, extra: &str, flags: &[&str]) -> Setup {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{extra}\n[[webhooks]]\nurl = \"{url}\"\nevents = {events}\nsecret_env = \"{SECRET_VAR}\"\n"
        ),
    )
    .unwrap();
    let secret = unique("webhook-secret");
    let callback_secret = unique("callback-secret");
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(flags);
    let server = Server::start_with_env(
        &args,
        &[
            (SECRET_VAR, &secret),
            (CALLBACK_SECRET_VAR, &callback_secret),
        ],
    );
    Setup {
        server,
        secret,
        callback_secret,
        _config_dir: config_dir,
    }
}

fn build_form(env: &TestEnv, run: &str) -> reqwest::blocking::multipart::Form {
    let repository = format!("{}/{}", env.registry, unique("hook"));
    field(
        field(with_file(env.dockerfile(run)), "repository", &repository),
        "push",
        "false",
    )
}

fn deliveries(server: &Server, build: i64) -> Vec<Value> {
    server.get_json(&format!("/api/v1/builds/{build}/deliveries"))["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls the build's deliveries until `done` holds.
fn wait_deliveries(server: &Server, build: i64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(server, build);
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries of build {build}: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn succeeded_and_failed_builds_each_deliver_once_with_a_signature_that_verifies() {
    let env = TestEnv::get();
    let receiver = Receiver::start(&[], Answer::Status(200));
    let callback_receiver = Receiver::start(&[], Answer::Status(204));
    let setup = start(
        &receiver.url(),
        "[\"succeeded\", \"failed\"]",
        &format!("allowed_callback_hosts = [\"127.0.0.1\"]\ncallback_secret_env = \"{CALLBACK_SECRET_VAR}\""),
        &[],
    );
    let server = &setup.server;
    let good = server.submit(field(
        build_form(&env, "true"),
        "callback_url",
        &callback_receiver.url(),
    ));
    assert_eq!(server.wait_final(good, BUILD_TIME)["status"], "succeeded");
    let bad = server.submit(build_form(&env, "false"));
    assert_eq!(server.wait_final(bad, BUILD_TIME)["status"], "failed");

    drop(receiver.wait_for(2, Duration::from_secs(20)));
    drop(callback_receiver.wait_for(1, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_secs(2));
    let received = receiver.received.lock().unwrap();
    assert_eq!(
        received.len(),
        2,
        "one delivery each, nothing for `started`"
    );
    for (hook, (id, event)) in received.iter().zip([(good, "succeeded"), (bad, "failed")]) {
        assert_eq!(hook.header("x-dockpub-event"), event);
        assert_eq!(hook.header("content-type"), "application/json");
        assert_signed(&setup.secret, hook);
        assert!(!hook.header("x-dockpub-delivery").is_empty());
        let payload = hook.json();
        assert_eq!(payload["event"], event);
        assert_eq!(payload["build"]["id"], id);
        assert_eq!(payload["build"]["status"], event);
        assert_eq!(
            payload["build"]["links"]["self"],
            format!("/api/v1/builds/{id}")
        );
    }
    assert_ne!(
        received[0].header("x-dockpub-delivery"),
        received[1].header("x-dockpub-delivery")
    );

    let callbacks = callback_receiver.received.lock().unwrap();
    assert_eq!(callbacks.len(), 1);
    let callback = &callbacks[0];
    assert_signed(&setup.callback_secret, callback);
    assert_eq!(callback.json()["build"]["id"], good);

    let listed = wait_deliveries(server, good, |list| {
        list.len() == 2 && list.iter().all(|d| d["state"] == "delivered")
    });
    assert_eq!(listed[0]["attempts"], 1);
    assert_eq!(listed[0]["last_status"], 200);
    assert_eq!(
        listed[0]["delivery_id"],
        received[0].header("x-dockpub-delivery")
    );
    assert_eq!(listed[1]["url"], callback_receiver.url());
    assert_eq!(listed[1]["last_status"], 204);

    let stored = std::fs::read(server.data_dir().join("dockpub.sqlite3")).unwrap();
    let stored = String::from_utf8_lossy(&stored);
    for secret in [&setup.secret, &setup.callback_secret] {
        assert!(
            !server.log().contains(secret.as_str()),
            "the secret is in the log"
        );
        assert!(!stored.contains(secret.as_str()), "the secret is in SQLite");
        assert!(!listed
            .iter()
            .any(|d| d.to_string().contains(secret.as_str())));
    }
    drop(callbacks);

    // The operator takes the callback's host off the list: a redelivery made
    // after that is checked again, and not sent.
    let config = setup._config_dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[\"127.0.0.1\"]", "[\"*.hooks.example\"]"),
    )
    .unwrap();
    let mut setup = setup;
    setup.server.kill();
    setup.server.restart();
    let server = &setup.server;
    let callback_delivery = listed[1]["id"].as_i64().unwrap();
    let response = server
        .client
        .post(server.url(&format!("/api/v1/deliveries/{callback_delivery}/redeliver")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let redelivered = wait_deliveries(server, good, |list| {
        list.len() == 3 && list[2]["attempts"].as_u64() > Some(0)
    });
    let error = redelivered[2]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("allowed_callback_hosts"),
        "{}",
        redelivered[2]
    );
    assert_eq!(callback_receiver.count(), 1, "the redelivery was sent");
}

#[test]
fn a_receiver_answering_500_twice_gets_three_attempts_with_one_delivery_id() {
    let env = TestEnv::get();
    let receiver = Receiver::start(
        &[Answer::Status(500), Answer::Status(500)],
        Answer::Status(200),
    );
    let setup = start(
        &receiver.url(),
        "[\"succeeded\"]",
        "webhook_retry_backoff_secs = [1, 1, 1]",
        &[],
    );
    let server = &setup.server;
    let id = server.submit(build_form(&env, "true"));
    server.wait_final(id, BUILD_TIME);

    let received = receiver.wait_for(3, Duration::from_secs(20));
    let first_id = received[0].header("x-dockpub-delivery").to_string();
    assert!(received
        .iter()
        .all(|r| r.header("x-dockpub-delivery") == first_id));
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "the same body each time"
    );
    drop(received);
    let listed = wait_deliveries(server, id, |list| {
        list.first().is_some_and(|d| d["state"] == "delivered")
    });
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["last_status"], 200);

    // Redelivery: a new delivery (new id), the same body.
    let delivery = listed[0]["id"].as_i64().unwrap();
    let response = server
        .client
        .post(server.url(&format!("/api/v1/deliveries/{delivery}/redeliver")))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let again: Value = response.json().unwrap();
    assert_eq!(again["redelivery_of"], delivery);
    let received = receiver.wait_for(4, Duration::from_secs(20));
    assert_eq!(
        received[3].header("x-dockpub-delivery"),
        again["delivery_id"].as_str().unwrap()
    );
    assert_ne!(received[3].header("x-dockpub-delivery"), first_id);
    assert_eq!(received[3].body, received[0].body);
    drop(received);

    for (path, status, code) in [
        (
            "/api/v1/deliveries/999999/redeliver",
            404,
            "delivery_not_found",
        ),
        ("/api/v1/deliveries/abc/redeliver", 400, "invalid_id"),
    ] {
        let response = server.client.post(server.url(path)).send().unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.json::<Value>().unwrap()["error"]["code"],
            code,
            "{path}"
        );
    }
    let response = server.get("/api/v1/builds/999999/deliveries");
    assert_eq!(response.status(), 404);
}

#[test]
fn a_delivery_waiting_for_its_retry_is_sent_after_a_kill_9_and_restart() {
    let env = TestEnv::get();
    let receiver = Receiver::start(&[Answer::Status(503)], Answer::Status(200));
    let mut setup = start(
        &receiver.url(),
        "[\"succeeded\"]",
        "webhook_retry_backoff_secs = [3]",
        &[],
    );
    let id = setup.server.submit(build_form(&env, "true"));
    setup.server.wait_final(id, BUILD_TIME);
    let waiting = wait_deliveries(&setup.server, id, |list| {
        list.first()
            .is_some_and(|d| d["attempts"] == 1 && d["last_status"] == 503)
    });
    assert_eq!(waiting[0]["state"], "pending");
    setup.server.kill();
    assert_eq!(receiver.count(), 1);

    setup.server.restart();
    let received = receiver.wait_for(2, Duration::from_secs(20));
    assert_eq!(
        received[0].header("x-dockpub-delivery"),
        received[1].header("x-dockpub-delivery")
    );
    drop(received);
    let listed = wait_deliveries(&setup.server, id, |list| list[0]["state"] == "delivered");
    assert_eq!(listed[0]["attempts"], 2);
}

#[test]
fn a_callback_url_to_a_host_not_allowed_is_refused_and_nothing_is_sent_or_stored() {
    let env = TestEnv::get();
    let receiver = Receiver::start(&[], Answer::Status(200));
    let refuse = |server: &Server, url: &str, code: &str, words: &str| {
        let response = server.post_form(
            "/api/v1/builds",
            field(build_form(&env, "true"), "callback_url", url),
        );
        assert_eq!(response.status(), 400, "{url}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{message}");
    };
    // Off by default.
    let server = Server::start();
    refuse(
        &server,
        &receiver.url(),
        "callback_not_allowed",
        "allowed_callback_hosts",
    );
    // Allowed hosts that do not include the one asked for.
    let setup = start(
        "http://127.0.0.1:9/unused",
        "[\"succeeded\"]",
        &format!("allowed_callback_hosts = [\"*.hooks.example\"]\ncallback_secret_env = \"{CALLBACK_SECRET_VAR}\""),
        &[],
    );
    refuse(
        &setup.server,
        &receiver.url(),
        "callback_not_allowed",
        "allowed_callback_hosts",
    );
    refuse(
        &setup.server,
        "http://hooks.example/x",
        "callback_not_allowed",
        "allowed_callback_hosts",
    );
    refuse(
        &setup.server,
        "ftp://a.hooks.example/x",
        "invalid_callback_url",
        "http",
    );
    refuse(
        &setup.server,
        "not a url",
        "invalid_callback_url",
        "callback_url",
    );
    refuse(
        &setup.server,
        "http://u:p@a.hooks.example/",
        "invalid_callback_url",
        "password",
    );

    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.count(), 0, "nothing was sent");
    for server in [&server, &setup.server] {
        assert_eq!(
            server.get_json("/api/v1/builds")["builds"],
            serde_json::json!([])
        );
        let stored = std::fs::read_dir(server.data_dir().join("builds"))
            .unwrap()
            .count();
        assert_eq!(stored, 0, "nothing was stored");
    }
}

#[test]
fn a_receiver_that_never_answers_does_not_delay_the_next_build() {
    let env = TestEnv::get();
    let receiver = Receiver::start(&[], Answer::Hang);
    let setup = start(
        &receiver.url(),
        "[\"started\", \"succeeded\", \"failed\", \"cancelled\"]",
        "",
        &["--max-concurrent-builds", "1"],
    );
    let server = &setup.server;
    let first = server.submit(build_form(&env, "true"));
    server.wait_final(first, BUILD_TIME);
    let started = Instant::now();
    let second = server.submit(build_form(&env, "true"));
    let done = server.wait_final(second, BUILD_TIME);
    let took = started.elapsed();
    assert_eq!(done["status"], "succeeded");
    assert!(took < ATTEMPT_TIMEOUT, "the second build took {took:?}");
    // The receiver holds every delivery open: none has an answer yet, yet both builds ended.
    let pending = deliveries(server, first);
    assert!(
        pending
            .iter()
            .all(|d| d["state"] == "pending" && d["last_status"].is_null()),
        "{pending:?}"
    );
    assert!(
        receiver.count() >= 2,
        "the first build's started and succeeded at least"
    );
}
