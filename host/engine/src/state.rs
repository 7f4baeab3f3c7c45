//! What one request's `Store` holds: WASI contexts granting nothing but stdio capture, the
//! capability states of the request's install, and the resource limiter.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::GuestLimiter;
use super::memory::MemoryCharge;
use super::output::GuestOutput;
use alga_edge_capabilities::context::{ContextState, RequestContext};
use alga_edge_capabilities::journal::LineSource;
use alga_edge_capabilities::{CapabilityView, RequestCapabilities};

/// The `T` of every `Store<T>` the engine creates: one per instance, which serves one request
/// or, with reuse on, several of one install in turn ([`HostState::renew`]).
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    capabilities: RequestCapabilities,
    pub(super) limiter: GuestLimiter,
    pub(super) context: ContextState,
    pub(super) stdout: GuestOutput,
    pub(super) stderr: GuestOutput,
}

impl HostState {
    /// State for one request: no filesystem, environment, arguments or sockets (DESIGN §2);
    /// stdout/stderr are captured for the log, up to `output_bytes` each; the growth of its
    /// memories is charged to `charge`.
    pub fn new(
        context: RequestContext,
        capabilities: RequestCapabilities,
        memory_limit_bytes: u64,
        output_bytes: usize,
        charge: MemoryCharge,
    ) -> Self {
        let stdout = GuestOutput::new(output_bytes, LineSource::Stdout);
        let stderr = GuestOutput::new(output_bytes, LineSource::Stderr);
        stdout.attach(capabilities.journal().clone());
        stderr.attach(capabilities.journal().clone());
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            capabilities,
            limiter: GuestLimiter::new(memory_limit_bytes, charge),
            context: ContextState::new(context),
            stdout,
            stderr,
        }
    }

    /// Renews everything the host gives a request, for the next request of a reused instance:
    /// its context and capabilities (grants, journal, egress counters, KV scope). The output
    /// captures were emptied when the last request ended; the guest's memory stays.
    pub(super) fn renew(&mut self, context: RequestContext, capabilities: RequestCapabilities) {
        self.context = ContextState::new(context);
        self.stdout.attach(capabilities.journal().clone());
        self.stderr.attach(capabilities.journal().clone());
        self.capabilities = capabilities;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: self.capabilities.egress(),
        }
    }
}

impl CapabilityView for HostState {
    fn capabilities(&mut self) -> &mut RequestCapabilities {
        &mut self.capabilities
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}
