//! The web UI: the operator console and the subscriber portal (DESIGN.md section 8), and the charts they show.

pub mod charts;
