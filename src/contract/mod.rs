//! The contract with the login frontend (docs/contract.md): the code record
//! it stores under each code and the checks a redemption makes against it
//! ([`record`]), and the frontend's side of it, issuing a code
//! ([`frontend`]), which `issue-code`, the dev endpoints, the tests and the
//! load generator use.

pub mod frontend;
pub mod record;
