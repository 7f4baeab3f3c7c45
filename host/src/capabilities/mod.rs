//! Host capabilities: one module per interface a component may import (DESIGN §2). Each module
//! owns its WIT binding, its scoping and its backing store; none knows about HTTP routing.
//!
//! Built so far: [`context`] (always granted) and [`egress`] (outbound HTTP, denied until the
//! egress allowlist lands).

pub mod context;
pub mod egress;
