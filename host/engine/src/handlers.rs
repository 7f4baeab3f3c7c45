//! How each handler ABI is called: WASIp2 `incoming-handler.handle` with a response outparam,
//! WASIp3 `handler.handle` returning the response inside the store's event loop, and Alga's
//! `runner` world `handler(execute-request) -> execute-response` with whole bodies.
//! Each starts the guest on its own task, which runs only in turns the CPU scheduler grants,
//! and hands back the response as it arrives; the caller
//! ([`super::invoke`]) owns deadlines, limits and error classification.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use alga_edge_capabilities::runner::bindings::RunnerPre;

use super::HostState;
use super::invoke::InvokeError;
use super::runner;
use super::scheduler::GuestTurn;
use alga_edge_http::HostBody;

/// How a guest's run ended, read from its store before the store is dropped.
pub(super) struct Finished {
    pub result: wasmtime::Result<()>,
    pub memory_denied: bool,
    pub stdout: (String, u64),
    pub stderr: (String, u64),
}

impl Finished {
    fn of(store: &Store<HostState>, result: wasmtime::Result<()>) -> Self {
        let state = store.data();
        Self {
            result,
            memory_denied: state.limiter.memory_denied(),
            stdout: state.stdout.take(),
            stderr: state.stderr.take(),
        }
    }
}

/// What the guest answered: a response head with its streaming body (cut at the response cap),
/// or why there is no usable response (the error the guest returned, or a request body that
/// could not be read); `None` when it ended without answering.
pub(super) type Answer = Option<Result<http::Response<HostBody>, InvokeError>>;

/// The guest's answer, once it has one.
pub(super) type PendingAnswer = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A guest started on its own task: the task ends when the guest does (after streaming its
/// body); `answer` resolves as soon as the response head is set.
pub(super) struct Started {
    pub task: JoinHandle<Finished>,
    pub answer: PendingAnswer,
}

/// Everything a guest run needs besides the component.
pub(super) struct Run<B> {
    pub store: Store<HostState>,
    pub request: http::Request<B>,
    pub slot: OwnedSemaphorePermit,
    pub instantiation: Histogram,
    /// The guest's place with the CPU scheduler: its task runs only while it holds a slot.
    pub turn: Arc<GuestTurn>,
    /// The response cap: a longer body is cut (the connection ends abruptly).
    pub max_response_bytes: usize,
}

/// Starts a WASIp2 component: `wasi:http/incoming-handler.handle(request, outparam)`.
pub(super) fn start_p2<B>(pre: ProxyPre<HostState>, run: Run<B>) -> wasmtime::Result<Started>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let Run {
        mut store,
        request,
        slot,
        instantiation,
        turn,
        max_response_bytes,
    } = run;
    let (response_tx, response_rx) = oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let outparam = store.data_mut().http().new_response_outparam(response_tx)?;
    let task = tokio::spawn(turn.run(async move {
        let _slot = slot;
        let result = async {
            let started = Instant::now();
            let proxy = pre.instantiate_async(&mut store).await?;
            instantiation.observe(started.elapsed().as_secs_f64());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await
        }
        .await;
        Finished::of(&store, result)
        // The store drops here, which drops an unset response outparam and wakes the caller.
    }));
    let answer = Box::pin(async move {
        match response_rx.await {
            Ok(Ok(response)) => {
                Some(Ok(response.map(|body| {
                    Limited::new(body, max_response_bytes).boxed_unsync()
                })))
            }
            Ok(Err(code)) => Some(Err(answered_error(format!("{code:?}")))),
            Err(_unset) => None,
        }
    });
    Ok(Started { task, answer })
}

/// Starts a WASIp3 component: `wasi:http/handler.handle(request) -> result<response, error-code>`.
///
/// A WASIp3 guest streams its body through the store's event loop, so the loop keeps running
/// after the response is handed over, until the body is finished or dropped.
pub(super) fn start_p3<B>(pre: ServicePre<HostState>, run: Run<B>) -> wasmtime::Result<Started>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let Run {
        mut store,
        request,
        slot,
        instantiation,
        turn,
        max_response_bytes,
    } = run;
    let (answer_tx, answer_rx) =
        oneshot::channel::<Result<http::Response<HostBody>, InvokeError>>();
    let task = tokio::spawn(turn.run(async move {
        let _slot = slot;
        let result = async {
            let started = Instant::now();
            let service = pre.instantiate_async(&mut store).await?;
            instantiation.observe(started.elapsed().as_secs_f64());
            let (request, request_body) =
                wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
            store
                .run_concurrent(async move |accessor| {
                    let response = match service.handle(accessor, request).await? {
                        Ok(response) => response,
                        Err(code) => {
                            let _ = answer_tx.send(Err(answered_error(format!("{code:?}"))));
                            return Ok(());
                        }
                    };
                    let response =
                        accessor.with(|access| response.into_http(access, request_body))?;
                    // Dropped with the body: when the client has read all of it, or left.
                    let (body_done_tx, body_done_rx) = oneshot::channel::<()>();
                    let response = response.map(|body| {
                        let body = body.map_frame(move |frame| {
                            let _held_until_the_body_drops = &body_done_tx;
                            frame
                        });
                        Limited::new(body, max_response_bytes).boxed_unsync()
                    });
                    if answer_tx.send(Ok(response)).is_ok() {
                        let _ = body_done_rx.await;
                    }
                    wasmtime::Result::<()>::Ok(())
                })
                .await?
        }
        .await;
        Finished::of(&store, result)
    }));
    let answer = Box::pin(async move { answer_rx.await.ok() });
    Ok(Started { task, answer })
}

/// The guest answered with a wasi:http error code instead of a response.
fn answered_error(code: String) -> InvokeError {
    InvokeError::BadGuestResponse(format!("it answered with the error {code}"))
}

/// Starts an Alga `runner` component: reads the whole request body (within the body cap the
/// gateway set on it), calls `handler(execute-request)` and turns its `execute-response` into
/// an HTTP response (at most `max_response_bytes` of body).
pub(super) fn start_runner<B>(pre: RunnerPre<HostState>, run: Run<B>) -> wasmtime::Result<Started>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let Run {
        mut store,
        request,
        slot,
        instantiation,
        turn,
        max_response_bytes,
    } = run;
    let (answer_tx, answer_rx) =
        oneshot::channel::<Result<http::Response<HostBody>, InvokeError>>();
    let task = tokio::spawn(turn.run(async move {
        let _slot = slot;
        let context = store.data().context.context().clone();
        let request = match runner::execute_request(request, &context).await {
            Ok(request) => request,
            Err(error) => {
                let _ = answer_tx.send(Err(error));
                return Finished::of(&store, Ok(()));
            }
        };
        let result = async {
            let started = Instant::now();
            let runner = pre.instantiate_async(&mut store).await?;
            instantiation.observe(started.elapsed().as_secs_f64());
            let response = runner.call_handler(&mut store, &request).await?;
            let _ = answer_tx.send(runner::http_response(response, max_response_bytes));
            wasmtime::Result::<()>::Ok(())
        }
        .await;
        Finished::of(&store, result)
    }));
    let answer = Box::pin(async move { answer_rx.await.ok() });
    Ok(Started { task, answer })
}
