//! XA return and error codes, as the X/Open XA specification and Java's
//! `javax.transaction.xa.XAException` number them (docs/protocol.md §4.4).
//! [`Error::Xa`](crate::Error::Xa) carries one of these in `code`.
//!
//! # Examples
//!
//! ```
//! use metaq::producer::xa_code;
//! // A broker answer `XAException:code=-4,msg=...` means the branch is unknown.
//! assert_eq!(xa_code::name(xa_code::XAER_NOTA), "XAER_NOTA");
//! assert_eq!(xa_code::name(42), "unknown");
//! ```

/// The branch is ready to commit (answer to PREPARE).
pub const XA_OK: i32 = 0;
/// The branch did no work; it is finished, nothing to commit (answer to PREPARE).
pub const XA_RDONLY: i32 = 3;
/// The branch was rolled back by hand (heuristically).
pub const XA_HEURRB: i32 = 6;
/// The branch was committed by hand (heuristically).
pub const XA_HEURCOM: i32 = 7;
/// The branch was partly committed, partly rolled back by hand.
pub const XA_HEURHAZ: i32 = 8;
/// The branch must be rolled back: a send in it failed (answer to
/// [`XaBranch::end`](crate::producer::XaBranch::end) of a broken branch).
pub const XA_RBROLLBACK: i32 = 100;
/// The branch was rolled back for an unspecified reason (store failure).
pub const XA_RBOTHER: i32 = 104;
/// The branch was rolled back, or its answer never came in time.
pub const XA_RBTIMEOUT: i32 = 106;
/// A resource manager error: any error answer that is not an `XAException`.
pub const XAER_RMERR: i32 = -3;
/// The branch is not known (never started, or already finished).
pub const XAER_NOTA: i32 = -4;
/// Invalid arguments.
pub const XAER_INVAL: i32 = -5;
/// The command is not allowed in the branch's state (two-phase commit
/// without prepare, a second prepare).
pub const XAER_PROTO: i32 = -6;
/// The resource manager is unavailable (no connection to the broker).
pub const XAER_RMFAIL: i32 = -7;

/// The constant's name for `code`, or `"unknown"`.
///
/// # Examples
///
/// ```
/// use metaq::producer::xa_code;
/// assert_eq!(xa_code::name(xa_code::XA_RBTIMEOUT), "XA_RBTIMEOUT");
/// ```
pub fn name(code: i32) -> &'static str {
    match code {
        XA_OK => "XA_OK",
        XA_RDONLY => "XA_RDONLY",
        XA_HEURRB => "XA_HEURRB",
        XA_HEURCOM => "XA_HEURCOM",
        XA_HEURHAZ => "XA_HEURHAZ",
        XA_RBROLLBACK => "XA_RBROLLBACK",
        XA_RBOTHER => "XA_RBOTHER",
        XA_RBTIMEOUT => "XA_RBTIMEOUT",
        XAER_RMERR => "XAER_RMERR",
        XAER_NOTA => "XAER_NOTA",
        XAER_INVAL => "XAER_INVAL",
        XAER_PROTO => "XAER_PROTO",
        XAER_RMFAIL => "XAER_RMFAIL",
        _ => "unknown",
    }
}
