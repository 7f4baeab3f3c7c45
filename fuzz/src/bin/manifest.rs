//! AFL++ entry point of the `manifest` target (see `alga_edge_fuzz::targets::manifest`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::manifest::run(data));
}
