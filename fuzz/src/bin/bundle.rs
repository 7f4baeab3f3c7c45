//! AFL++ entry point of the `bundle` target (see `alga_edge_fuzz::targets::bundle`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::bundle::run(data));
}
