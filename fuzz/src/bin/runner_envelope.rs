//! AFL++ entry point of the `runner_envelope` target (see `alga_edge_fuzz::targets::runner_envelope`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::runner_envelope::run(data));
}
