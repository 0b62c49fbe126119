//! The HTTP layer of Campus Errand: routes, extractors, auth, error mapping.
//! It calls the services in `campus_impl` and never touches SQL.

#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod telemetry;

pub use startup::Application;
