//! Renderers: tables, patronictl-compatible JSON, reports. They write to `&mut impl Write`
//! and are tested against a `Vec<u8>`.

pub mod live;
pub mod patronictl;
pub mod report;
pub mod table;
pub mod term;
