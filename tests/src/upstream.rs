//! A loopback upstream for outbound-HTTP tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A loopback HTTP server answering `pong <path>` to every request until dropped; counts the
/// requests it saw. Its accept loop polls and stops by itself after two minutes at most.
pub struct Upstream {
    /// Its loopback port.
    pub port: u16,
    /// Requests it has seen.
    pub seen: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts the server on a random loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                seen2.fetch_add(1, Ordering::Relaxed);
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.split(' ').nth(1).unwrap_or("?").to_owned();
                let body = format!("pong {target}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, seen, stop }
    }
}

impl Upstream {
    /// The egress policy the egress tests install with: this server by address and by name,
    /// and the cloud metadata address, which the nodes do not allow.
    pub fn install_policy(&self) -> String {
        let port = self.port;
        format!("egress_allow=127.0.0.1:{port},localhost:{port},169.254.169.254")
    }

    /// What an install with [`Upstream::install_policy`] may not fetch on a node that allows
    /// this server by address and by name, each with the error the guest sees.
    pub fn refused_by_policy(&self) -> [(String, &'static str); 3] {
        let port = self.port;
        [
            // Not in the install's list (other port).
            (
                format!("http://127.0.0.1:{}/x", port.wrapping_add(1)),
                "HttpRequestDenied",
            ),
            // In the install's list but not the node's.
            (
                "http://169.254.169.254/latest/meta-data/".to_owned(),
                "HttpRequestDenied",
            ),
            // Allowed by both lists by name, but the name resolves to loopback.
            (
                format!("http://localhost:{port}/x"),
                "DestinationIpProhibited",
            ),
        ]
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
