//! AFL++ entry point of the `headers` target (see `alga_edge_fuzz::targets::headers`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::headers::run(data));
}
