//! How each handler ABI is called: WASIp2 `incoming-handler.handle` with a response outparam,
//! WASIp3 `handler.handle` returning the response inside the store's event loop, and Alga's
//! `runner` world `handler(execute-request) -> execute-response` with whole bodies.
//! Each starts the guest on its own task, which runs only in turns the CPU scheduler grants,
//! and hands back the response as it arrives; the caller
//! ([`super::invoke`]) owns deadlines, limits and error classification. With reuse on, the
//! task gives an instance that ended its request cleanly back to the warm pool.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use alga_edge_capabilities::runner::bindings::{Runner, RunnerPre};

use super::HostState;
use super::invoke::InvokeError;
use super::reuse::{Live, Reuse, Warm, WarmPool};
use super::runner;
use super::scheduler::GuestTurn;
use alga_edge_http::HostBody;
use alga_edge_http::trace_context;

/// How a guest's run ended, read from its store before the store is dropped.
pub(super) struct Finished {
    pub result: wasmtime::Result<()>,
    pub memory_denied: bool,
    pub budget_refused: Option<super::memory::MemoryRefusal>,
    pub stdout: (String, u64),
    pub stderr: (String, u64),
}

impl Finished {
    fn of(store: &Store<HostState>, result: wasmtime::Result<()>) -> Self {
        let state = store.data();
        Self {
            result,
            memory_denied: state.limiter.memory_denied(),
            budget_refused: state.limiter.budget_refused(),
            stdout: state.stdout.take(),
            stderr: state.stderr.take(),
        }
    }

    /// Whether the instance may serve another request: the guest ended without error and
    /// within its memory.
    fn clean(&self) -> bool {
        self.result.is_ok() && !self.memory_denied
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

/// The instance a run uses: a fresh one of the component, or a warm one of its install.
pub(super) enum Source<P> {
    Fresh(P),
    Warm { live: Live, served: u32 },
}

/// A component prepared for instantiation in one handler ABI.
pub(super) trait Pre: Clone + Send + 'static {
    /// Its instance.
    type Instance: Send;

    /// A fresh instance in `store`.
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a;

    /// The instance a warm `live` one of this ABI holds.
    fn warm(live: Live) -> Self::Instance;
}

impl Pre for ProxyPre<HostState> {
    type Instance = Proxy;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Proxy>> + Send + 'a {
        self.instantiate_async(store)
    }

    fn warm(live: Live) -> Proxy {
        match live {
            Live::P2(proxy) => proxy,
            _ => unreachable!("a warm instance has its install's ABI"),
        }
    }
}

impl Pre for ServicePre<HostState> {
    type Instance = Service;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Service>> + Send + 'a {
        self.instantiate_async(store)
    }

    fn warm(live: Live) -> Service {
        match live {
            Live::P3(service) => service,
            _ => unreachable!("a warm instance has its install's ABI"),
        }
    }
}

impl Pre for RunnerPre<HostState> {
    type Instance = Runner;

    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Runner>> + Send + 'a {
        self.instantiate_async(store)
    }

    fn warm(live: Live) -> Runner {
        match live {
            Live::Runner(runner) => runner,
            _ => unreachable!("a warm instance has its install's ABI"),
        }
    }
}

impl<P: Pre> Source<P> {
    /// The instance to run and the requests it has served: the warm one, or a fresh one
    /// (its instantiation time observed).
    async fn instance(
        self,
        store: &mut Store<HostState>,
        instantiation: &Histogram,
    ) -> wasmtime::Result<(P::Instance, u32)> {
        match self {
            Source::Warm { live, served } => Ok((P::warm(live), served)),
            Source::Fresh(pre) => {
                let span = trace_context::span("instantiate");
                let started = Instant::now();
                let instance = pre.instantiate(store).await?;
                instantiation.observe(started.elapsed().as_secs_f64());
                span.end();
                Ok((instance, 0))
            }
        }
    }
}

/// The guest's task: polled only in its turns with the CPU scheduler, and within a `guest`
/// span (a child of the request's), so the host calls it makes find their parent span.
fn guest_task<F: Future>(turn: Arc<GuestTurn>, guest: F) -> impl Future<Output = F::Output> {
    trace_context::within(turn.run(guest), trace_context::child_context("guest"))
}

/// Where a reusable instance goes back after its request.
pub(super) struct GiveBack {
    pub pool: Arc<WarmPool>,
    pub reuse: Reuse,
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
    /// With reuse on: the pool a clean instance goes back to.
    pub give_back: Option<GiveBack>,
}

impl GiveBack {
    /// Returns the instance to the pool if its request ended cleanly and its response was
    /// delivered whole.
    fn offer(
        self,
        store: Store<HostState>,
        live: Live,
        served: u32,
        slot: OwnedSemaphorePermit,
        finished: &Finished,
        delivered: bool,
    ) {
        if finished.clean() && delivered {
            self.pool
                .put(&self.reuse, Warm::new(store, live, served + 1, slot));
        }
    }
}

/// Starts a WASIp2 component: `wasi:http/incoming-handler.handle(request, outparam)`.
pub(super) fn start_p2<B>(
    source: Source<ProxyPre<HostState>>,
    run: Run<B>,
) -> wasmtime::Result<Started>
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
        give_back,
    } = run;
    let (response_tx, mut response_rx) = oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let outparam = store.data_mut().http().new_response_outparam(response_tx)?;
    // The task forwards the response head as soon as the guest sets it, and knows after the
    // call whether it ever did (an unset outparam of a store that lives on would never say).
    let (head_tx, head_rx) = oneshot::channel();
    let (delivered_tx, delivered_rx) = oneshot::channel();
    let task = tokio::spawn(guest_task(turn, async move {
        let (proxy, served) = match source.instance(&mut store, &instantiation).await {
            Ok(instance) => instance,
            Err(error) => return Finished::of(&store, Err(error)),
        };
        let mut head_tx = Some(head_tx);
        let result = {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam);
            tokio::pin!(call);
            loop {
                tokio::select! {
                    result = &mut call => break result,
                    head = &mut response_rx, if head_tx.is_some() => {
                        if let (Some(tx), Ok(head)) = (head_tx.take(), head) {
                            let _ = tx.send(head);
                        }
                    }
                }
            }
        };
        let mut answered = head_tx.is_none();
        if let Some(tx) = head_tx.take()
            && let Ok(head) = response_rx.try_recv()
        {
            let _ = tx.send(head);
            answered = true;
        }
        let finished = Finished::of(&store, result);
        if let Some(give_back) = give_back
            && finished.clean()
            && answered
        {
            // The guest returned; its instance is reusable once the client has the whole body.
            let delivered = delivered_rx.await.unwrap_or(false);
            give_back.offer(store, Live::P2(proxy), served, slot, &finished, delivered);
        }
        finished
    }));
    let answer = Box::pin(async move {
        match head_rx.await {
            Ok(Ok(response)) => Some(Ok(response.map(|body| {
                Delivered::new(Limited::new(body, max_response_bytes), delivered_tx).boxed_unsync()
            }))),
            Ok(Err(code)) => Some(Err(answered_error(format!("{code:?}")))),
            // The guest ended without setting a response.
            Err(_unset) => None,
        }
    });
    Ok(Started { task, answer })
}

/// Starts a WASIp3 component: `wasi:http/handler.handle(request) -> result<response, error-code>`.
///
/// A WASIp3 guest streams its body through the store's event loop, so the loop keeps running
/// after the response is handed over, until the body is finished or dropped.
pub(super) fn start_p3<B>(
    source: Source<ServicePre<HostState>>,
    run: Run<B>,
) -> wasmtime::Result<Started>
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
        give_back,
    } = run;
    let (answer_tx, answer_rx) =
        oneshot::channel::<Result<http::Response<HostBody>, InvokeError>>();
    let task = tokio::spawn(guest_task(turn, async move {
        let (service, served) = match source.instance(&mut store, &instantiation).await {
            Ok(instance) => instance,
            Err(error) => return Finished::of(&store, Err(error)),
        };
        let (request, request_body) =
            wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
        let handle = &service;
        let result = store
            .run_concurrent(async move |accessor| {
                let response = match handle.handle(accessor, request).await? {
                    Ok(response) => response,
                    Err(code) => {
                        let _ = answer_tx.send(Err(answered_error(format!("{code:?}"))));
                        return Ok(false);
                    }
                };
                let response = accessor.with(|access| response.into_http(access, request_body))?;
                // Resolves with the body: when the client has read all of it, or left.
                let (delivered_tx, delivered_rx) = oneshot::channel();
                let response = response.map(|body| {
                    Delivered::new(Limited::new(body, max_response_bytes), delivered_tx)
                        .boxed_unsync()
                });
                if answer_tx.send(Ok(response)).is_err() {
                    return Ok(false);
                }
                wasmtime::Result::<bool>::Ok(delivered_rx.await.unwrap_or(false))
            })
            .await
            .and_then(|inner| inner);
        let (result, delivered) = match result {
            Ok(delivered) => (Ok(()), delivered),
            Err(error) => (Err(error), false),
        };
        let finished = Finished::of(&store, result);
        if let Some(give_back) = give_back {
            give_back.offer(store, Live::P3(service), served, slot, &finished, delivered);
        }
        finished
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
pub(super) fn start_runner<B>(
    source: Source<RunnerPre<HostState>>,
    run: Run<B>,
) -> wasmtime::Result<Started>
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
        give_back,
    } = run;
    let (answer_tx, answer_rx) =
        oneshot::channel::<Result<http::Response<HostBody>, InvokeError>>();
    let task = tokio::spawn(guest_task(turn, async move {
        let context = store.data().context.context().clone();
        let request = match runner::execute_request(request, &context).await {
            Ok(request) => request,
            Err(error) => {
                let _ = answer_tx.send(Err(error));
                return Finished::of(&store, Ok(()));
            }
        };
        let (runner, served) = match source.instance(&mut store, &instantiation).await {
            Ok(instance) => instance,
            Err(error) => return Finished::of(&store, Err(error)),
        };
        let (result, delivered) = match runner.call_handler(&mut store, &request).await {
            Ok(response) => {
                let response = runner::http_response(response, max_response_bytes);
                let whole = response.is_ok();
                let _ = answer_tx.send(response);
                (Ok(()), whole)
            }
            Err(error) => (Err(error), false),
        };
        let finished = Finished::of(&store, result);
        if let Some(give_back) = give_back {
            give_back.offer(
                store,
                Live::Runner(runner),
                served,
                slot,
                &finished,
                delivered,
            );
        }
        finished
    }));
    let answer = Box::pin(async move { answer_rx.await.ok() });
    Ok(Started { task, answer })
}

/// A response body that reports, once, whether it reached its end: `true` when the client got
/// all of it, `false` when it failed (cut at the response cap, the guest's stream broke) or
/// was dropped before its end (the client left).
struct Delivered<B: Body> {
    inner: B,
    report: Option<oneshot::Sender<bool>>,
}

impl<B: Body> Delivered<B> {
    fn new(inner: B, report: oneshot::Sender<bool>) -> Self {
        Self {
            inner,
            report: Some(report),
        }
    }

    fn report(&mut self, whole: bool) {
        if let Some(report) = self.report.take() {
            let _ = report.send(whole);
        }
    }
}

impl<B: Body + Unpin> Body for Delivered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.report(true),
            Poll::Ready(Some(Err(_))) => self.report(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Delivered<B> {
    fn drop(&mut self) {
        // The server stops polling a body that says it has ended.
        let whole = self.inner.is_end_stream();
        if let Some(report) = self.report.take() {
            let _ = report.send(whole);
        }
    }
}
