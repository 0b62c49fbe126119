pub mod qps;
pub mod sim;
