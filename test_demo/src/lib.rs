pub mod sim;
pub mod qps;
