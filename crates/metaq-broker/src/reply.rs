//! A request's answer as the connection task awaits it, and the two ways
//! to make one at once. A leaf: every request handler uses it.

use futures::future::{self, BoxFuture, FutureExt};
use metaq::protocol::{Response, StatusCode};

/// What a request turns into: a future resolving to its answer.
pub(crate) type Reply = BoxFuture<'static, Response>;

/// An answer that is ready now.
pub(crate) fn ready(response: Response) -> Reply {
    future::ready(response).boxed()
}

/// An error answer with `text` as its body.
pub(crate) fn error(code: StatusCode, opaque: i32, text: impl Into<String>) -> Reply {
    ready(Response::text(code, opaque, text))
}
