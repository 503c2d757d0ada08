//! The web UI (DESIGN.md section 8): the operator console at `/ui/` on the
//! internal listener (`console`) and the subscriber portal at `/portal/`
//! on the public one (`portal`). Pages are server-rendered from compiled
//! templates (askama, `templates/`), with one stylesheet and one small
//! refresh script embedded in the binary (`assets`); they work without
//! script and need nothing from elsewhere. Sessions, their cookies and
//! CSRF tokens are `session`; the frame of a page and the message after an
//! action are `page`; errors are answered in `error`; charts are drawn
//! server-side as SVG (`charts`) from this node's last hour
//! (`crate::metrics::recent`). The pages call the
//! same functions as the JSON API, so both behave alike.

pub mod assets;
pub mod charts;
pub mod console;
pub mod error;
pub mod form;
pub mod page;
pub mod portal;
pub mod session;
pub mod text;
