//! The HTTP server under concurrent requests while a new version is published: no request fails;
//! bad requests get 4xx with a JSON error.

use recpipe_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A minimal HTTP/1.1 client: returns (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    stream.read_to_string(&mut resp).expect("receive");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(art: &Path, cfg: &Path) -> (Server, String) {
    let mut child = Command::new(recpipe_bin())
        .args([
            "--config",
            s(cfg),
            "serve",
            "--artifacts",
            s(art),
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("address line")
        .to_string();
    (Server(child), addr)
}

#[test]
fn concurrent_requests_during_a_publish_and_bad_requests() {
    let w = World::new("server", 21);
    let (art, cfg) = (w.art.clone(), w.cfg.clone());
    let cfg_text =
        std::fs::read_to_string(&cfg).expect("cfg") + "\n[serve]\npoll_interval_ms = 200\n";
    std::fs::write(&cfg, cfg_text).expect("cfg");
    w.build(&[]);
    let v1 = current(&art).expect("CURRENT");
    let (_server, addr) = start(&art, &cfg);

    let (code, body) = http(&addr, "GET", "/healthz", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&v1));

    // Bad requests.
    for (method, path, body, want) in [
        ("GET", "/v1/users/abc/candidates", "", 400),
        ("GET", "/v1/users/1/candidates?k=0", "", 400),
        ("GET", "/v1/users/1/candidates?k=999999", "", 400),
        ("GET", "/v1/users/1/candidates?k=x", "", 400),
        ("GET", "/v1/users/1/candidates?rerank=maybe", "", 400),
        ("POST", "/v1/recommend", "{not json", 400),
        ("POST", "/v1/recommend", "{\"history\": \"x\"}", 400),
        (
            "POST",
            "/v1/recommend",
            "{\"history\": [1], \"bogus\": 1}",
            400,
        ),
        ("GET", "/v2/nothing", "", 404),
    ] {
        let (code, resp) = http(&addr, method, path, body);
        assert_eq!(code, want, "{method} {path} {body}: {resp}");
        let v: serde_json::Value = serde_json::from_str(&resp).expect("JSON error body");
        assert!(v["error"].is_string(), "{resp}");
    }
    let big = format!("{{\"history\": [{}]}}", vec!["1"; 40_000].join(","));
    let (code, _) = http(&addr, "POST", "/v1/recommend", &big);
    assert_eq!(code, 413);

    // Load while a new version is published.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, ok, failed, addr) = (stop.clone(), ok.clone(), failed.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (code, body) = if n.is_multiple_of(2) {
                        http(
                            &addr,
                            "GET",
                            &format!("/v1/users/{}/candidates?k=20", (n * 7 + w) % 600),
                            "",
                        )
                    } else {
                        http(
                            &addr,
                            "POST",
                            "/v1/recommend",
                            "{\"history\": [1, 5, 9], \"k\": 15}",
                        )
                    };
                    if code == 200 && body.contains("\"items\"") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {code} {body}");
                    }
                }
            })
        })
        .collect();
    // The new version holds another kind of retriever (MF): the swap must not care.
    let mf_dir = w.root.join("mf");
    std::fs::create_dir_all(&mf_dir).expect("mkdir");
    let mf_cfg = small_config_for(&mf_dir, "mf");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.build_with(&mf_cfg, &["--force"]);
    let v2 = current(&art).expect("CURRENT");
    assert_eq!(w.manifest(&v2)["metrics"]["retrieval_model"], "mf");
    assert_ne!(v1, v2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, body) = http(&addr, "GET", "/healthz", "");
        if body.contains(&v2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server never swapped to {v2}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the swap"
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    let (code, m) = http(&addr, "GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(
        m.contains("recpipe_requests_total{endpoint=\"candidates\",status=\"200\"}"),
        "{m}"
    );
    assert!(
        m.contains(&format!("recpipe_live_version{{version=\"{v2}\"}} 1")),
        "{m}"
    );
    assert!(m.contains("recpipe_request_duration_seconds_bucket"));
}
