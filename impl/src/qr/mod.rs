//! QR images: the order's delivery QR made locally.

mod local;

pub use local::{QrRenderError, local_png};
