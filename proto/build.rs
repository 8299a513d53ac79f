//! Generates the gRPC code with `protox`, a pure-Rust protobuf compiler, so building needs no
//! system `protoc`. Also writes one file descriptor set per API (for gRPC server reflection:
//! each server reflects only its own services) and serde implementations following the
//! canonical proto3 JSON mapping (for `--json` output).

use std::path::PathBuf;

/// Each API, with the name of its descriptor set file.
const APIS: [(&str, &str); 2] = [
    ("exchange/registry/v1/registry.proto", "registry_descriptor.bin"),
    ("exchange/node/v1/node.proto", "node_descriptor.bin"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    for (file, descriptor) in APIS {
        println!("cargo:rerun-if-changed={file}");
        let fds = protox::compile([file], ["."])?;
        std::fs::write(out.join(descriptor), prost::Message::encode_to_vec(&fds))?;
    }
    let fds = protox::compile(APIS.map(|(file, _)| file), ["."])?;
    let encoded = prost::Message::encode_to_vec(&fds);
    tonic_prost_build::configure().compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[".exchange"])?;
    Ok(())
}
