//! How a long step says what it is doing: a leaf both the executor (heal's reinitialization)
//! and the operations use, so neither imports the other for it. The CLI shows it as a
//! spinner or lines on stderr; watch logs it; tests stay quiet.

/// Progress lines of a long step (per member).
pub trait Progress: Send + Sync {
    fn update(&self, member: &str, message: &str);
}

/// No progress output.
#[derive(Debug)]
pub struct Quiet;

impl Progress for Quiet {
    fn update(&self, _: &str, _: &str) {}
}
