//! Generates the gRPC code with `protox`, a pure-Rust protobuf compiler, so building needs no
//! system `protoc`. Also writes the file descriptor set (for gRPC server reflection) and serde
//! implementations following the canonical proto3 JSON mapping (for `--json` output).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["exchange/registry/v1/registry.proto", "exchange/node/v1/node.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("exchange_descriptor.bin"), &encoded)?;
    tonic_prost_build::configure().compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[".exchange"])?;
    Ok(())
}
