//! The HTTP side of `--metrics-addr`: one std thread answering one request per
//! connection (`GET /metrics`, `GET /healthz`). Prometheus scrapes every few
//! seconds and the kubelet probes about as often: no async runtime is needed, and
//! a slow client is cut off by the socket timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

use super::Health;

/// Longest request head read; the endpoints take no body.
const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Listen on `addr` (port 0: any free port), before anything is loaded: an address
/// in use fails the command before it attaches anything.
pub fn listen(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| {
        format!("--metrics-addr {addr}: cannot listen there (in use? use another port)")
    })
}

/// Serve from a thread of its own; returns the address bound, for the start-up line.
pub fn serve(listener: TcpListener, registry: Registry, health: Arc<Health>) -> Result<SocketAddr> {
    let bound = listener
        .local_addr()
        .context("--metrics-addr: reading the address bound")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that goes away mid-answer is its own problem.
                let _ = answer(stream, &registry, &health);
            }
        })
        .context("starting the metrics thread")?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, registry: &Registry, health: &Health) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let response = respond(&head, registry, health);
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    if !head.starts_with("HEAD ") {
        out.push_str(&response.body);
    }
    stream.write_all(out.as_bytes())
}

/// The request line and headers, up to the blank line (or `MAX_HEAD` bytes).
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

fn respond(head: &str, registry: &Registry, health: &Health) -> Response {
    let text = |status, body: String| Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    };
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if !matches!(path, "/metrics" | "/healthz") {
        return text(
            "404 Not Found",
            "not found: try /metrics or /healthz\n".into(),
        );
    }
    if !matches!(method, "GET" | "HEAD") {
        return text("405 Method Not Allowed", "only GET and HEAD\n".into());
    }
    if path == "/healthz" {
        return match health.check() {
            Ok(()) => text("200 OK", "ok\n".into()),
            Err(why) => text("503 Service Unavailable", format!("{why}\n")),
        };
    }
    let mut body = String::new();
    match prometheus_text::encode(&mut body, registry) {
        Ok(()) => Response {
            status: "200 OK",
            content_type: prometheus_text::CONTENT_TYPE,
            body,
        },
        Err(_) => text(
            "500 Internal Server Error",
            "encoding the metrics failed\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn get(path: &str, registry: &Registry, health: &Health) -> Response {
        respond(
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
            registry,
            health,
        )
    }

    #[test]
    fn routes_metrics_health_and_the_rest() {
        let mut registry = super::super::registry();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things done", counter.clone());
        counter.inc_by(3);
        let health = Health::default();

        let metrics = get("/metrics", &registry, &health);
        assert_eq!(metrics.status, "200 OK");
        assert!(
            metrics.body.contains("fingerprint_things_total 3\n"),
            "{}",
            metrics.body
        );
        assert_eq!(
            get("/healthz", &registry, &health).status,
            "503 Service Unavailable"
        );
        health.set_attached(true);
        health.ring_read();
        assert_eq!(get("/healthz?x=1", &registry, &health).status, "200 OK");
        assert_eq!(get("/", &registry, &health).status, "404 Not Found");
        let post = respond("POST /metrics HTTP/1.1\r\n\r\n", &registry, &health);
        assert_eq!(post.status, "405 Method Not Allowed");
    }
}
