//! Renderers: tables, JSON, YAML, reports. They write to `&mut impl Write`.
