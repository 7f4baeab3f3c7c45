//! AFL++ entry point of the `tenant_token` target (see `alga_edge_fuzz::targets::tenant_token`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::tenant_token::run(data));
}
