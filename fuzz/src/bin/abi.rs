//! AFL++ entry point of the `abi` target (see `alga_edge_fuzz::targets::abi`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::abi::run(data));
}
