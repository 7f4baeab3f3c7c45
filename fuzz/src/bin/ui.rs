//! AFL++ entry point of the `ui` target (see `alga_edge_fuzz::targets::ui`).
fn main() {
    afl::fuzz!(|data: &[u8]| alga_edge_fuzz::targets::ui::run(data));
}
