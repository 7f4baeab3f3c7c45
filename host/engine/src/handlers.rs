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

    /// A run cancelled at its deadline while blocked outside wasm (its store went with it).
    pub(super) fn cancelled() -> Self {
        Self {
            result: Err(wasmtime::Trap::Interrupt.into()),
            memory_denied: false,
            budget_refused: None,
            stdout: (String::new(), 0),
            stderr: (String::new(), 0),
        }
    }
}

/// What the guest answered: a response head with its streaming body (cut at the response cap),
/// or why there is no usable response (the error the guest returned, or a request body that
/// could not be read); `None` when it ended without answering.
pub(super) type Answer = Option<Result<http::Response<HostBody>, InvokeError>>;

/// The guest's answer, once it has one.
pub(super) type PendingAnswer = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// A guest run, to be spawned on its own task.
pub(super) type GuestRun = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// A guest ready to start: `guest` ends when the guest does (after streaming its body);
/// `answer` resolves as soon as the response head is set.
pub(super) struct Started {
    pub guest: GuestRun,
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
    /// Set once the caller has been handed an answer (a response head or an error): from then
    /// on the run's output and any later failure are the guest task's to log.
    pub responded: Responded,
}

/// Whether a run has handed its caller an answer (see [`Run::responded`]).
#[derive(Clone, Default)]
pub(super) struct Responded(Arc<std::sync::atomic::AtomicBool>);

impl Responded {
    /// Records that the caller has its answer.
    fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    /// A channel for the caller's answer whose sender records, as it sends, that the caller
    /// has it: no send path can forget to.
    fn answering<T>(&self) -> (Answering<T>, oneshot::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        let answering = Answering {
            tx,
            responded: self.clone(),
        };
        (answering, rx)
    }

    /// Whether the caller has its answer.
    pub(super) fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The sending half of the caller's answer (see [`Responded::answering`]).
pub(super) struct Answering<T> {
    tx: oneshot::Sender<T>,
    responded: Responded,
}

impl<T> Answering<T> {
    /// Hands the caller its answer; `false` when the caller is gone.
    fn send(self, answer: T) -> bool {
        self.responded.set();
        self.tx.send(answer).is_ok()
    }
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
        clean: bool,
        delivered: bool,
    ) {
        if clean && delivered {
            self.pool
                .put(&self.reuse, Warm::new(store, live, served + 1, slot));
        }
    }
}

/// Where a WASIp2 guest that returned meets the end of its response body: whichever of the
/// two comes second decides whether the instance goes back to the pool. The guest's task
/// thus ends when the guest returns instead of waking again when the client has the body.
struct Handback {
    state: std::sync::Mutex<HandbackState>,
}

enum HandbackState {
    /// Neither the guest returned cleanly nor the body ended yet.
    Open,
    /// The body ended: `true` when the client got all of it.
    Delivered(bool),
    /// The guest returned; its instance waits for the body's end.
    Parked(Box<dyn FnOnce(bool) + Send>),
}

impl Handback {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::Mutex::new(HandbackState::Open),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandbackState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The guest returned cleanly: `give_back` runs now if the body already ended, or when
    /// it does.
    fn guest_returned(&self, give_back: impl FnOnce(bool) + Send + 'static) {
        let mut state = self.lock();
        match *state {
            HandbackState::Delivered(whole) => {
                drop(state);
                give_back(whole);
            }
            _ => *state = HandbackState::Parked(Box::new(give_back)),
        }
    }

    /// The body ended (`whole`: the client got all of it).
    fn body_ended(&self, whole: bool) {
        let parked = {
            let mut state = self.lock();
            match std::mem::replace(&mut *state, HandbackState::Delivered(whole)) {
                HandbackState::Parked(give_back) => Some(give_back),
                _ => None,
            }
        };
        if let Some(give_back) = parked {
            give_back(whole);
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
        responded,
    } = run;
    let (response_tx, mut response_rx) = oneshot::channel();
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)?;
    let outparam = store.data_mut().http().new_response_outparam(response_tx)?;
    // The task forwards the response head as soon as the guest sets it, and knows after the
    // call whether it ever did (an unset outparam of a store that lives on would never say).
    let (head_tx, head_rx) = responded.answering();
    let handback = give_back.as_ref().map(|_| Handback::new());
    let body_end = handback.clone();
    let guest = Box::pin(guest_task(turn, async move {
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
                            tx.send(head);
                        }
                    }
                }
            }
        };
        if let Some(tx) = head_tx.take()
            && let Ok(head) = response_rx.try_recv()
        {
            tx.send(head);
        }
        let answered = head_tx.is_none();
        let finished = Finished::of(&store, result);
        if let (Some(give_back), Some(handback)) = (give_back, handback)
            && finished.clean()
            && answered
        {
            // Reusable once the client has the whole body, which may already be the case.
            handback.guest_returned(move |delivered| {
                give_back.offer(store, Live::P2(proxy), served, slot, true, delivered);
            });
        }
        finished
    }));
    let answer = Box::pin(async move {
        match head_rx.await {
            Ok(Ok(response)) => Some(Ok(response.map(|body| {
                let body = Limited::new(body, max_response_bytes);
                match body_end {
                    Some(handback) => {
                        Delivered::new(body, move |whole| handback.body_ended(whole)).boxed_unsync()
                    }
                    None => body.boxed_unsync(),
                }
            }))),
            Ok(Err(code)) => Some(Err(answered_error(format!("{code:?}")))),
            // The guest ended without setting a response.
            Err(_unset) => None,
        }
    });
    Ok(Started { guest, answer })
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
        responded,
    } = run;
    let (answer_tx, answer_rx) =
        responded.answering::<Result<http::Response<HostBody>, InvokeError>>();
    let passes = turn.clone();
    let guest = Box::pin(guest_task(turn, async move {
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
                        answer_tx.send(Err(answered_error(format!("{code:?}"))));
                        return Ok(false);
                    }
                };
                let response = accessor.with(|access| response.into_http(access, request_body))?;
                let (head, body) = response.into_parts();
                let mut body = Prefetched::new(Limited::new(body, max_response_bytes));
                // A few passes of the event loop (three for a wstd guest's short answer) let
                // the guest write what it has ready, often its whole body. Taken now, that body
                // goes out with the head in one write and the instance is done before the
                // client reads; otherwise the caller, woken first, would flush the head alone
                // and wake again for each frame. A guest that streams slowly costs at most
                // `PREFETCH_PASSES` cheap polls, run slot kept, before its head is sent.
                let mut filled = false;
                for _ in 0..PREFETCH_PASSES {
                    if !body.may_take_more(PREFETCH_BYTES) {
                        break;
                    }
                    passes.pass().await;
                    filled = body.fill(PREFETCH_BYTES);
                }
                if filled {
                    let sent =
                        answer_tx.send(Ok(http::Response::from_parts(head, body.boxed_unsync())));
                    return wasmtime::Result::<bool>::Ok(sent);
                }
                // Resolves with the body: when the client has read all of it, or left.
                let (delivered_tx, delivered_rx) = oneshot::channel();
                let body = Delivered::new(body, move |whole| {
                    let _ = delivered_tx.send(whole);
                });
                let response = http::Response::from_parts(head, body.boxed_unsync());
                if !answer_tx.send(Ok(response)) {
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
            let clean = finished.clean();
            give_back.offer(store, Live::P3(service), served, slot, clean, delivered);
        }
        finished
    }));
    let answer = Box::pin(async move { answer_rx.await.ok() });
    Ok(Started { guest, answer })
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
        responded,
    } = run;
    let (answer_tx, answer_rx) =
        responded.answering::<Result<http::Response<HostBody>, InvokeError>>();
    let guest = Box::pin(guest_task(turn, async move {
        let context = store.data().context.context().clone();
        let request = match runner::execute_request(request, &context).await {
            Ok(request) => request,
            Err(error) => {
                answer_tx.send(Err(error));
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
                answer_tx.send(response);
                (Ok(()), whole)
            }
            Err(error) => (Err(error), false),
        };
        let finished = Finished::of(&store, result);
        if let Some(give_back) = give_back {
            let clean = finished.clean();
            give_back.offer(store, Live::Runner(runner), served, slot, clean, delivered);
        }
        finished
    }));
    let answer = Box::pin(async move { answer_rx.await.ok() });
    Ok(Started { guest, answer })
}

/// Most of a guest's response body [`Prefetched::fill`] takes before the head is sent.
const PREFETCH_BYTES: usize = 64 << 10;

/// Event-loop passes a WASIp3 guest gets to write its body before the head is sent.
const PREFETCH_PASSES: usize = 8;

/// A response body whose first frames may already be taken from the guest's stream (see
/// [`Prefetched::fill`]); it yields those first, then the rest of the stream.
struct Prefetched<B: Body> {
    taken: std::collections::VecDeque<Result<Frame<B::Data>, B::Error>>,
    /// Data bytes taken so far.
    bytes: usize,
    /// The rest of the stream; `None` once it ended or failed.
    rest: Option<B>,
}

impl<B: Body<Data = Bytes> + Unpin> Prefetched<B> {
    fn new(body: B) -> Self {
        Self {
            taken: std::collections::VecDeque::new(),
            bytes: 0,
            rest: Some(body),
        }
    }

    /// Whether [`Self::fill`] could take more: the stream goes on and less than `max` bytes
    /// are taken.
    fn may_take_more(&self, max: usize) -> bool {
        self.rest.is_some() && self.bytes < max
    }

    /// Takes the frames the stream has ready now, until about `max` bytes of data are taken
    /// in all; true when that reached its clean end (the whole body is taken and no longer
    /// needs the guest).
    fn fill(&mut self, max: usize) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while self.bytes < max {
            let Some(rest) = self.rest.as_mut() else {
                break;
            };
            match Pin::new(rest).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    self.bytes += frame.data_ref().map_or(0, Bytes::len);
                    self.taken.push_back(Ok(frame));
                }
                Poll::Ready(Some(Err(error))) => {
                    self.taken.push_back(Err(error));
                    self.rest = None;
                    return false;
                }
                Poll::Ready(None) => {
                    self.rest = None;
                    return true;
                }
                Poll::Pending => break,
            }
        }
        false
    }
}

impl<B> Body for Prefetched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(frame) = self.taken.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.taken.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let taken: u64 = self
            .taken
            .iter()
            .filter_map(|frame| frame.as_ref().ok()?.data_ref())
            .map(|data| data.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(taken),
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + taken);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + taken);
                }
                hint
            }
        }
    }
}

/// A response body that reports, once, whether it reached its end: `true` when the client got
/// all of it, `false` when it failed (cut at the response cap, the guest's stream broke) or
/// was dropped before its end (the client left).
struct Delivered<B: Body, R: FnOnce(bool)> {
    inner: B,
    report: Option<R>,
}

impl<B: Body, R: FnOnce(bool)> Delivered<B, R> {
    fn new(inner: B, report: R) -> Self {
        Self {
            inner,
            report: Some(report),
        }
    }

    fn report(&mut self, whole: bool) {
        if let Some(report) = self.report.take() {
            report(whole);
        }
    }
}

impl<B: Body + Unpin, R: FnOnce(bool) + Unpin> Body for Delivered<B, R> {
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

impl<B: Body, R: FnOnce(bool)> Drop for Delivered<B, R> {
    fn drop(&mut self) {
        // The server stops polling a body that says it has ended.
        let whole = self.inner.is_end_stream();
        self.report(whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::collections::VecDeque;

    /// A body that answers its polls from a script: a data frame, an error, or not ready yet
    /// (`None`); past the script it has ended.
    struct Scripted(VecDeque<Option<Result<&'static [u8], &'static str>>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            match self.0.pop_front() {
                None => Poll::Ready(None),
                Some(None) => Poll::Pending,
                Some(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(data))))),
                Some(Some(Err(error))) => Poll::Ready(Some(Err(std::io::Error::other(error)))),
            }
        }
    }

    /// Reads a body to its end: its data, or the first error.
    async fn read_all<B: Body<Data = Bytes> + Unpin>(body: B) -> Result<Vec<u8>, B::Error> {
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn a_body_ready_whole_is_taken_and_replayed_with_its_exact_size() {
        let mut body = Prefetched::new(Full::new(Bytes::from_static(b"ok\n")));
        assert!(body.fill(PREFETCH_BYTES));
        assert!(!body.may_take_more(PREFETCH_BYTES));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert_eq!(read_all(body).await.unwrap(), b"ok\n");
    }

    #[tokio::test]
    async fn a_stream_not_ready_is_taken_in_part_and_the_rest_follows() {
        let script = [Some(Ok(&b"first "[..])), None, Some(Ok(&b"second"[..]))];
        let mut body = Prefetched::new(Scripted(script.into()));
        assert!(!body.fill(PREFETCH_BYTES), "the stream goes on");
        assert!(body.may_take_more(PREFETCH_BYTES));
        assert_eq!(body.bytes, 6);
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(read_all(body).await.unwrap(), b"first second");
    }

    #[tokio::test]
    async fn taking_stops_at_the_byte_bound_and_at_an_error() {
        let script = [Some(Ok(&[7u8; 10][..])); 4];
        let mut body = Prefetched::new(Scripted(script.into()));
        assert!(!body.fill(15));
        assert_eq!(body.bytes, 20, "two frames reach the bound of 15");
        assert!(!body.may_take_more(15));
        assert_eq!(read_all(body).await.unwrap().len(), 40);

        let script = [
            Some(Ok(&b"a"[..])),
            Some(Err("broken")),
            Some(Ok(&b"b"[..])),
        ];
        let mut body = Prefetched::new(Scripted(script.into()));
        assert!(
            !body.fill(PREFETCH_BYTES),
            "a failed stream is not a whole body"
        );
        assert!(!body.may_take_more(PREFETCH_BYTES));
        assert!(read_all(body).await.is_err(), "the error is replayed");
    }
}
