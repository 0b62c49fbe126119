//! Clients for WeChat's servers: the mini-program API, Pay v2 and the official account.

pub mod callback_ips;
pub mod http;
pub mod mini;
pub mod mp;
pub mod mp_crypto;
pub mod mp_xml;
pub mod pay;
pub mod push;
pub mod wxacode;
