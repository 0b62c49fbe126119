//! QR images: the order's delivery QR made locally, and mini-program codes from WeChat
//! cached locally and in object storage.

mod local;
pub mod mini_code;

pub use local::{QrRenderError, local_png};
pub use mini_code::{CodeSource, MiniCode, MiniCodeError, QrCodes};
