//! The exchange's gRPC API, generated from `proto/exchange/**.proto` at build time.
//!
//! # Layout
//! - `registry::v1`: the registry service (departments, catalog, schemas, grants, watch).
//! - `node::v1`: a department node (publish, get, query, subscribe, status).
//! - `registry::v1::FILE_DESCRIPTOR_SET`, `node::v1::FILE_DESCRIPTOR_SET`: each API's messages
//!   and services, for gRPC server reflection (a server reflects only its own API).
//!
//! Every message implements serde's `Serialize`/`Deserialize` with the canonical proto3 JSON
//! mapping (camelCase names, enums as their names), the same JSON grpcurl prints.

#![allow(unreachable_pub, missing_docs, clippy::all)]

/// The registry's API, package `exchange.registry.v1`.
pub mod registry {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("exchange.registry.v1");
        include!(concat!(env!("OUT_DIR"), "/exchange.registry.v1.serde.rs"));

        /// Encoded `FileDescriptorSet` of this API, for `tonic-reflection`.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/registry_descriptor.bin"));
    }
}

/// A department node's API, package `exchange.node.v1`.
pub mod node {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("exchange.node.v1");
        include!(concat!(env!("OUT_DIR"), "/exchange.node.v1.serde.rs"));

        /// Encoded `FileDescriptorSet` of this API, for `tonic-reflection`.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/node_descriptor.bin"));
    }
}
