//! The contract with the login frontend (docs/contract.md): the code record
//! it stores under each code and the checks a redemption makes against it
//! ([`record`]), and the frontend's side of it: what an authorization
//! request must be before a code is issued for it ([`authorize`], applied
//! by the stand-in login page), and issuing a code ([`frontend`]), which
//! `issue-code`, the dev endpoints, the tests and the load generator use.

pub mod authorize;
pub mod frontend;
pub mod record;
