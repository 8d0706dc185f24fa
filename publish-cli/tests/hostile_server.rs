//! The CLI against a hostile server: answers too large to hold are refused with an error naming
//! the limit (without reading them), and text meant for the terminal (escape sequences, bidi
//! overrides) is printed escaped on every path, human, `--json` and errors. The server is a
//! bare std listener that answers every request with one canned response.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// What the fake server sends after the status line: either a whole response or an endless body.
#[derive(Clone)]
enum Answer {
    /// Status and JSON body, with a correct Content-Length.
    Json(u16, String),
    /// 200 with this Content-Length (or none), then zeros until the client hangs up.
    Flood(Option<u64>),
}

fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || respond(sock, answer));
        }
    });
    url
}

fn respond(mut sock: TcpStream, answer: Answer) {
    // Read the request head (the CLI's GETs have no body).
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
        line.clear();
    }
    match answer {
        Answer::Json(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes());
            let _ = sock.write_all(body.as_bytes());
        }
        Answer::Flood(len) => {
            let length = len.map(|l| format!("content-length: {l}\r\n")).unwrap_or_default();
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}connection: close\r\n\r\n");
            let _ = sock.write_all(head.as_bytes());
            let zeros = vec![b'0'; 64 * 1024];
            // 100 MB at most; stops as soon as the CLI hangs up.
            for _ in 0..1600 {
                if sock.write_all(&zeros).is_err() {
                    break;
                }
            }
        }
    }
}

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_publish-cli"))
        .args(args)
        .args(["--server", url, "--auth-token", "test-token"])
        .env_remove("EXPO_UPDATES_AUTH_TOKEN")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Neither ESC nor a bidi override nor a C1 control reaches the terminal.
fn assert_inert(s: &str) {
    assert!(!s.chars().any(|c| c.is_control() && c != '\n' || ('\u{202a}'..='\u{202e}').contains(&c)), "{s:?}");
}

const HOSTILE_ENTRY: &str = r#"{"entries": [{"at": "2026-01-01T00:00:00.000Z", "actor": "admin",
    "actorName": "ci\u001b]0;pwned\u0007", "action": "publish\u202e", "slug": "demo-app",
    "status": 500, "error": "boom\u001b[2J\r\u009b31m"}], "nextCursor": "9999999999999-00000000"}"#;

#[test]
fn audit_entry_with_escape_sequences_is_printed_escaped() {
    let url = serve(Answer::Json(200, HOSTILE_ENTRY.into()));
    let out = cli(&url, &["audit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_inert(&stdout);
    assert!(stdout.contains(r"boom\x1b[2J\x0d\u{9b}31m"), "{stdout}");
    assert!(stdout.contains(r"publish\u{202e}") && stdout.contains(r"ci\x1b]0;pwned\x07"), "{stdout}");
    assert!(stdout.contains("older entries: --before 9999999999999-00000000"), "{stdout}");
}

#[test]
fn audit_json_is_escaped_and_still_the_same_json() {
    let url = serve(Answer::Json(200, HOSTILE_ENTRY.into()));
    let out = cli(&url, &["audit", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_inert(&stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["entries"][0]["error"], "boom\u{1b}[2J\r\u{9b}31m");
    assert_eq!(v["entries"][0]["action"], "publish\u{202e}");
}

#[test]
fn server_error_message_with_escape_sequences_is_printed_escaped() {
    let url = serve(Answer::Json(403, r#"{"error": "no\u001b[2J\u202eway"}"#.into()));
    let out = cli(&url, &["token", "list"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_inert(&stderr);
    assert!(stderr.contains(r"HTTP 403: no\x1b[2J\u{202e}way"), "{stderr}");
}

#[test]
fn token_names_from_the_server_are_printed_escaped() {
    let body = r#"{"tokens": [{"id": "0123456789abcdef", "name": "ci\u001b[1A\u2066", "apps": ["demo-app"],
        "scopes": ["read"], "createdAt": "2026-01-01T00:00:00.000Z"}]}"#;
    let url = serve(Answer::Json(200, body.into()));
    let out = cli(&url, &["token", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_inert(&stdout);
    assert!(stdout.contains(r"ci\x1b[1A\u{2066}"), "{stdout}");
}

#[test]
fn a_declared_100_mb_answer_is_refused_before_reading() {
    let url = serve(Answer::Flood(Some(100_000_000)));
    let started = Instant::now();
    let out = cli(&url, &["audit"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("100000000 bytes, over this CLI's limit of 16777216 bytes"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn an_undeclared_100_mb_answer_is_refused_at_the_limit() {
    let url = serve(Answer::Flood(None));
    let out = cli(&url, &["token", "list"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("more than 16777216 bytes, over this CLI's limit"), "{stderr}");
}
