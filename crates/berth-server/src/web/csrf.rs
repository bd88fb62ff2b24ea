//! CSRF tokens for the web site's forms. A signed-in visitor's token is derived from
//! their session cookie; before signing in (the sign-in form itself) it is derived from
//! a random `berth_csrf` cookie. Both cookies are `HttpOnly` and `SameSite=Strict`, so
//! another site can neither read them nor make the browser send them, and so cannot
//! produce the token a form must carry.

use berth_auth::secret;

/// The pre-session cookie's name.
pub const COOKIE: &str = "berth_csrf";

pub fn for_session(session_secret: &str) -> String {
    secret::csrf_token(session_secret)
}

pub fn for_visitor(csrf_cookie: &str) -> String {
    // Labelled apart from session tokens: a pre-session token never passes for one.
    secret::csrf_token(&format!("visitor:{csrf_cookie}"))
}

pub fn new_cookie() -> String {
    secret::new_csrf_cookie()
}

pub fn same(sent: &str, expected: &str) -> bool {
    secret::same_secret(sent, expected)
}
