//! AFL++ entry point of the `kv` target (see `alga_edge_fuzz::targets::kv`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::kv::run(data));
}
