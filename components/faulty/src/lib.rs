//! `faulty`: each route misbehaves in one way a hostile or buggy extension could, so tests can
//! prove the host contains it and keeps serving.
//!
//! - `/trap`: panics (an abort, so a wasm trap)
//! - `/loop`: spins forever without yielding
//! - `/sleep`: waits an hour on a host timer (blocked in the host, not running wasm)
//! - `/oom`: allocates (and touches) memory without bound
//! - `/stack`: recurses until the wasm call stack overflows
//! - `/shadow-stack`: recurses until Rust's in-memory (shadow) stack runs out of linear memory
//! - `/huge?mb=N`: streams N MiB (default 1024) of body
//! - `/hold?mb=N&ms=T`: allocates (and touches) N MiB, holds it T ms, then answers
//! - `/count`: how many `/count` requests this instance has served (1 on a fresh instance)
//! - anything else: `200 ok`

use futures_lite::stream;
use std::convert::Infallible;
use std::hint::black_box;
use wstd::http::body::Bytes;
use wstd::http::{Body, Error, Request, Response};

const CHUNK: usize = 64 * 1024;

/// `/count` requests this instance served: guest memory, lost with the instance.
static COUNTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match request.uri().path() {
        "/hold" => {
            let query = request.uri().query();
            let mb = query_u64(query, "mb").unwrap_or(1);
            let ms = query_u64(query, "ms").unwrap_or(0);
            let held = vec![0xA5u8; (mb as usize) << 20];
            wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
            Ok(Response::new(format!("held {} MiB\n", black_box(&held).len() >> 20).into()))
        }
        "/count" => {
            let n = COUNTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            Ok(Response::new(format!("{n}\n").into()))
        }
        "/trap" => panic!("faulty: deliberate trap"),
        "/loop" => spin_forever(),
        "/oom" => hoard_memory(),
        "/sleep" => {
            wstd::task::sleep(wstd::time::Duration::from_secs(3600)).await;
            Ok(Response::new("woke up\n".into()))
        }
        "/stack" => {
            let depth = recurse_call_stack(black_box(1));
            Ok(Response::new(format!("unreachable depth {depth}").into()))
        }
        "/shadow-stack" => {
            let depth = recurse_shadow_stack(black_box(1));
            Ok(Response::new(format!("unreachable depth {depth}").into()))
        }
        "/huge" => {
            let mb = query_u64(request.uri().query(), "mb").unwrap_or(1024);
            Ok(Response::new(huge_body(mb * 1024 * 1024)))
        }
        _ => Ok(Response::new("ok\n".into())),
    }
}

fn spin_forever() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn hoard_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill so every page is really committed, not just reserved.
        hoard.push(vec![0xA5; 1 << 20]);
        black_box(&hoard);
    }
}

// Locals stay in wasm locals (nothing address-taken), so every level costs wasm call-stack
// space only, until the engine's stack limit traps.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse_call_stack(depth: u64) -> u64 {
    recurse_call_stack(black_box(depth + 1)).wrapping_add(depth)
}

// An address-taken array lives on Rust's shadow stack in linear memory; recursion walks it down
// past the start of memory.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse_shadow_stack(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    recurse_shadow_stack(depth + 1).wrapping_add(frame[7])
}

fn huge_body(total: u64) -> Body {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let chunks = stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK as u64) as usize;
            Some((Ok::<_, Infallible>(chunk.slice(..n)), left - n as u64))
        }
    });
    Body::from_try_stream(chunks)
}

fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}
