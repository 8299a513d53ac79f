//! The gRPC skin shared by the registry, the nodes and the command line: mutual TLS, identity
//! from client certificates, the exchange PKI, and the mapping of core errors to gRPC statuses.
//!
//! # Layout
//! - `pki`: create an exchange CA and issue certificates naming a department and role.
//! - `tls`: the server side of mutual TLS; the accept loop hands verified-later connections to tonic.
//! - `server`: the one assembly of a server (TLS, authentication, health, reflection,
//!   shutdown) that the registry and every node are built with; their data directory made private.
//! - `stream`: server streams that give way to a shutdown.
//! - `auth`: turns a request's peer certificate into a [`exchange_core::identity::Principal`].
//! - `client`: a tonic channel to a registry or node over mutual TLS.
//! - `convert`: API messages to core types and back.
//! - `status`: `CoreError` to `tonic::Status`, in one place.

pub mod auth;
pub mod client;
pub mod convert;
pub mod pki;
pub mod server;
pub mod status;
pub mod stream;
pub mod tls;

pub use auth::Authenticator;
pub use status::to_status;
