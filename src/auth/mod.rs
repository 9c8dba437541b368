//! Who a client is (identity of its certificate) and what it may do (policies, §4).

pub mod apikey;
pub mod identity;
pub mod policy;

pub use apikey::ApiKey;
pub use identity::Identity;
