//! Authentication and authorization over HTTP.
