//! One request through one instance (fresh, or warm from the pool): create or renew the store
//! with its limits, start the
//! component's wasi:http handler ([`super::handlers`]), and turn every way that can end into a
//! response or an [`InvokeError`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Body;
use wasmtime::{PoolConcurrencyLimitError, Store, Trap, UpdateDeadline};

use super::cpu::CpuBudgetExceeded;
use super::handlers::{self, Finished, GiveBack, Responded, Run, Source, Started};
use super::memory::MemoryRefusal;
use super::reuse::{Live, Reuse, Warm};
use super::{Engine, HostState, Prepared};
use alga_edge_capabilities::RequestCapabilities;
use alga_edge_capabilities::context::RequestContext;
use alga_edge_http::HostBody;

/// Why a component call produced no response. Knows nothing of HTTP: the gateway maps each
/// to its status.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// Every instance slot of this node is busy.
    #[error("this node is at capacity ({max} concurrent instances); retry shortly")]
    AtCapacity {
        /// The node-wide instance cap.
        max: u32,
    },
    /// The component trapped: a panic, `unreachable`, a bad memory access…
    #[error("the extension crashed: {0}")]
    GuestTrap(String),
    /// The component tried to grow its memory past the per-instance cap.
    #[error("the extension exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// The cap, in MiB.
        limit_mib: u64,
    },
    /// The component overflowed the wasm stack.
    #[error("the extension overflowed its stack")]
    StackOverflow,
    /// The component answered with an HTTP error code instead of a response, or never answered.
    #[error("the extension returned no valid response: {0}")]
    BadGuestResponse(String),
    /// The node's memory budget, or the tenant's share of it, refused the instance memory.
    #[error("{}", memory_refusal_text(.0))]
    MemoryBudget(MemoryRefusal),
    /// The guest used its CPU budget (time running, not waiting on host I/O).
    #[error("the extension used its CPU budget of {budget_ms} ms")]
    CpuBudget {
        /// The budget that was spent.
        budget_ms: u64,
    },
    /// The component did not finish within the deadline.
    #[error("the extension did not answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The request body is over the cap the gateway set (a runner-world component gets the
    /// whole body, so it is read before the guest starts).
    #[error("the request body is over the size limit")]
    RequestBodyTooLarge,
    /// The client's request body failed while it was read.
    #[error("the request body could not be read: {0}")]
    RequestBody(String),
    /// A failure of the host itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl InvokeError {
    /// Stable machine-readable class, for logs (the gateway answers with the same codes).
    pub fn code(&self) -> &'static str {
        match self {
            Self::AtCapacity { .. } => "node_at_capacity",
            Self::GuestTrap(_) => "extension_trap",
            Self::MemoryLimit { .. } => "extension_memory_limit",
            Self::MemoryBudget(MemoryRefusal::Node { .. }) => "node_memory_budget",
            Self::MemoryBudget(MemoryRefusal::Tenant { .. }) => "tenant_memory_budget",
            Self::StackOverflow => "extension_stack_overflow",
            Self::BadGuestResponse(_) => "extension_bad_response",
            Self::Timeout { .. } => "extension_timeout",
            Self::CpuBudget { .. } => "extension_cpu_budget",
            Self::RequestBodyTooLarge => "payload_too_large",
            Self::RequestBody(_) => "bad_request",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// What a memory refusal tells the caller.
fn memory_refusal_text(refusal: &MemoryRefusal) -> String {
    match refusal {
        MemoryRefusal::Node { budget } => format!(
            "this node's memory budget ({} MiB) is in use by running extensions",
            budget >> 20
        ),
        MemoryRefusal::Tenant { share } => format!(
            "this tenant's share of the node's memory ({} MiB) is in use",
            share >> 20
        ),
    }
}

/// Limits of one request where they may differ from the engine's defaults (an install's
/// policy overrides them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall-clock deadline; `None`: the engine's.
    pub timeout: Option<Duration>,
    /// CPU time the guest may use (see `cpu`); `None`: none beyond the deadline, and its CPU
    /// time is not measured.
    pub cpu_budget: Option<Duration>,
}

/// How long past the deadline the host waits before cancelling the call. A guest running wasm
/// traps at the first epoch tick past the deadline (2 ms by default) and its output is logged; one blocked
/// in host I/O never reaches an epoch check and is cancelled when this grace ends.
const CANCEL_GRACE: Duration = Duration::from_millis(25);

impl Engine {
    /// Serves `request` with an instance of `component`, for `context`, with the install's
    /// `capabilities`, within `limits` (the deadline, the engine's default when unset; a CPU
    /// budget). The instance is a
    /// fresh one, or with `reuse` a warm one of the same install and generation when the pool
    /// has one (and the instance goes back to the pool if the request ends cleanly).
    ///
    /// The deadline covers everything the guest does, including streaming the response body;
    /// a body cut by the deadline or the response-size cap ends the connection abruptly.
    pub async fn run<B>(
        &self,
        component: &Prepared,
        request: http::Request<B>,
        context: RequestContext,
        capabilities: RequestCapabilities,
        limits: RunLimits,
        reuse: Option<Reuse>,
    ) -> Result<http::Response<HostBody>, InvokeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let config = &self.config;
        let reuse = reuse.filter(|reuse| reuse.max_requests >= 2);
        let warm = reuse.as_ref().and_then(|reuse| self.warm.take(reuse));
        let request_id = context.request_id.clone();
        let tenant: std::sync::Arc<str> = context.tenant_id.as_str().into();
        let timeout = limits.timeout.unwrap_or(config.timeout);
        let cpu_budget = limits.cpu_budget;
        let deadline = Instant::now() + timeout;
        let (mut store, slot, warm) = match warm {
            Some(Warm {
                mut store,
                live,
                served,
                slot,
                ..
            }) => {
                store.data_mut().renew(context, capabilities);
                (store, slot, Some((live, served)))
            }
            None => {
                let slot = self.instance_slot()?;
                let state = HostState::new(
                    context,
                    capabilities,
                    config.memory_limit_bytes,
                    config.guest_output_bytes,
                    self.memory.charge(tenant.clone()),
                );
                let mut store = Store::new(component.engine(), state);
                store.limiter(|state| &mut state.limiter);
                (store, slot, None)
            }
        };
        // Check the clock and the CPU budget at every epoch tick, and yield: a spinning guest
        // never monopolises a runtime worker, and gives its run slot to the next tenant's
        // guest waiting for one (see `CpuScheduler`). The callback runs inside the guest's
        // poll, on its thread, so the meter sees the running slice.
        //
        // The callback also fires the first time wasm runs after a tick that passed while the
        // guest waited (on its client, on host I/O); under load nearly every request spans a
        // tick. Such a guest has not held its worker for a slice: it gives its slot on when a
        // guest waits for one (turns stay round-robin) and otherwise carries on, skipping the
        // round of runtime yields that would cost its task several extra polls.
        store.set_epoch_deadline(1);
        let turn = self.scheduler.guest(tenant, cpu_budget.is_some());
        let yields = turn.clone();
        let slice = config.epoch_tick / 2;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if let Some(budget) = cpu_budget
                && yields.cpu_used().is_some_and(|used| used >= budget)
            {
                return Err(CpuBudgetExceeded { budget }.into());
            }
            if yields.running_for() < slice {
                if !yields.others_waiting() {
                    return Ok(UpdateDeadline::Continue(1));
                }
                return Ok(UpdateDeadline::YieldCustom(1, yields.hand_off_turn()));
            }
            Ok(UpdateDeadline::YieldCustom(1, yields.yield_turn()))
        });

        let responded = Responded::default();
        let run = Run {
            store,
            request,
            slot,
            instantiation: self.instantiation.clone(),
            turn,
            max_response_bytes: usize::try_from(config.max_response_bytes).unwrap_or(usize::MAX),
            give_back: reuse.map(|reuse| GiveBack {
                pool: self.warm.clone(),
                reuse,
            }),
            responded: responded.clone(),
        };
        fn source<P: Clone>(pre: &P, warm: Option<(Live, u32)>) -> Source<P> {
            match warm {
                Some((live, served)) => Source::Warm { live, served },
                None => Source::Fresh(pre.clone()),
            }
        }
        let Started { guest, answer } = match component {
            Prepared::P2(pre) => handlers::start_p2(source(pre, warm), run),
            Prepared::P3(pre) => handlers::start_p3(source(pre, warm), run),
            Prepared::Runner(pre) => handlers::start_runner(source(pre, warm), run),
        }
        .map_err(|e| InvokeError::Internal(format!("{e:#}")))?;

        let limits = Limits::of(self, timeout);
        let cancel_at = tokio::time::Instant::from_std(deadline + CANCEL_GRACE);
        let task = tokio::spawn(follow_guest(
            guest,
            responded,
            request_id.clone(),
            limits,
            cancel_at,
        ));
        // No timer of its own on the answer: the guest task ends by `cancel_at` whatever the
        // guest does, and its end drops the answer's sender.
        match answer.await {
            // The guest task logs how the rest of the run goes.
            Some(answer) => answer,
            None => {
                let abort = task.abort_handle();
                match tokio::time::timeout_at(cancel_at, task).await {
                    Ok(Ok(Some(finished))) => {
                        log_guest_output(&request_id, &finished);
                        let error = classify(&finished, limits);
                        tracing::warn!(%request_id, error = error.code(), "extension failed: {}", describe(&finished));
                        Err(error)
                    }
                    Ok(Ok(None)) => Err(InvokeError::Internal(
                        "the extension task answered nobody".into(),
                    )),
                    Ok(Err(join)) => Err(InvokeError::Internal(format!(
                        "extension task failed: {join}"
                    ))),
                    Err(_) => {
                        abort.abort();
                        Err(limits.timeout())
                    }
                }
            }
        }
    }
}

/// The guest's own task: runs `guest` until it ends or `cancel_at` passes. Once the guest has
/// answered, the caller is gone with the response, so this task logs the guest's output and
/// any later failure (a trap or timeout mid-body) itself, and yields `None`; otherwise it
/// hands the run's end to the caller to classify. One task per request, and nobody is woken
/// when it ends after answering.
async fn follow_guest(
    guest: handlers::GuestRun,
    responded: Responded,
    request_id: String,
    limits: Limits,
    cancel_at: tokio::time::Instant,
) -> Option<Finished> {
    let finished = tokio::time::timeout_at(cancel_at, guest).await;
    if !responded.get() {
        return Some(finished.unwrap_or_else(|_| Finished::cancelled()));
    }
    let Ok(finished) = finished else {
        tracing::warn!(%request_id, error = "extension_timeout", "extension cancelled while streaming its response");
        return None;
    };
    log_guest_output(&request_id, &finished);
    if finished.result.is_err() {
        let error = classify(&finished, limits);
        tracing::warn!(%request_id, error = error.code(), "extension failed after responding: {}", describe(&finished));
    }
    None
}

impl Engine {
    /// A node instance slot; when every slot is taken and some are held by idle warm
    /// instances, the oldest idle one gives its slot up.
    fn instance_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        loop {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return Ok(slot),
                Err(_) if self.warm.evict_oldest() => continue,
                Err(_) => {
                    return Err(InvokeError::AtCapacity {
                        max: self.config.max_instances,
                    });
                }
            }
        }
    }
}

/// The limits a failure is reported against.
#[derive(Clone, Copy)]
struct Limits {
    timeout_ms: u64,
    memory_limit_bytes: u64,
    max_instances: u32,
}

impl Limits {
    fn of(engine: &Engine, timeout: Duration) -> Self {
        Self {
            timeout_ms: timeout.as_millis() as u64,
            memory_limit_bytes: engine.config.memory_limit_bytes,
            max_instances: engine.config.max_instances,
        }
    }

    fn timeout(self) -> InvokeError {
        InvokeError::Timeout {
            timeout_ms: self.timeout_ms,
        }
    }
}

/// Maps how a guest ended (without a usable response) to the error the caller sees.
fn classify(finished: &Finished, limits: Limits) -> InvokeError {
    let error = match &finished.result {
        Ok(()) => {
            return InvokeError::BadGuestResponse("it returned without setting a response".into());
        }
        Err(error) => error,
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => limits.timeout(),
        Some(Trap::StackOverflow) => InvokeError::StackOverflow,
        None if error.is::<CpuBudgetExceeded>() => InvokeError::CpuBudget {
            budget_ms: error
                .downcast_ref::<CpuBudgetExceeded>()
                .map_or(0, |spent| spent.budget.as_millis() as u64),
        },
        _ if finished.budget_refused.is_some() => {
            InvokeError::MemoryBudget(finished.budget_refused.expect("checked"))
        }
        _ if finished.memory_denied => InvokeError::MemoryLimit {
            limit_mib: limits.memory_limit_bytes >> 20,
        },
        Some(trap) => InvokeError::GuestTrap(trap.to_string()),
        None if error.is::<PoolConcurrencyLimitError>() => InvokeError::AtCapacity {
            max: limits.max_instances,
        },
        None => InvokeError::GuestTrap(error.to_string()),
    }
}

/// The error chain and, when wasmtime captured one, the guest's wasm backtrace (what an
/// extension author needs; the host's native backtrace is noise here).
fn describe(finished: &Finished) -> String {
    match &finished.result {
        Ok(()) => "no response was set".into(),
        Err(error) => match error.downcast_ref::<wasmtime::WasmBacktrace>() {
            Some(backtrace) => format!("{error:#}\n{backtrace}"),
            None => format!("{error:#}"),
        },
    }
}

/// One log event per line of guest output, each carrying the request id, so aggregated logs
/// can always attribute a line to its request.
fn log_guest_output(request_id: &str, finished: &Finished) {
    for (stream, (text, dropped)) in [("stdout", &finished.stdout), ("stderr", &finished.stderr)] {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let line = alga_edge_capabilities::logging::escape_guest_text(line);
            tracing::info!(target: "guest", %request_id, stream, "{line}");
        }
        if *dropped > 0 {
            tracing::warn!(target: "guest", %request_id, stream, dropped_bytes = dropped, "guest output past the per-request bound was dropped");
        }
    }
}
